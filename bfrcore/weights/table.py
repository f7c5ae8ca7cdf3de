"""Every pretrained file the suite can use (one record each, like timm's pretrained configs).

Hashes: ``sha256`` is a full digest either published upstream or computed by us from the copy that ships in a
pinned package (noted per entry); ``sha256_prefix`` is the digest prefix an upstream embeds in the file name
(torchvision, pytorch-fid and pyiqa all use the sha256 prefix). Where neither exists the entry names a
``content`` check (:mod:`bfrcore.weights.content`: keys and shapes of the architecture, or the expected arrays)
that ``bench weights import`` / ``fetch`` run before installing, and the digest of the user's copy is recorded in
every manifest that uses it.
"""

from bfrcore.weights.registry import PypiArchiveSource, WeightsEntry, register

_TV = "https://download.pytorch.org/models/"
_PYIQA = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
_DLIB = "http://dlib.net/files/"
_DLIB_LICENSE_68 = "dlib model: iBUG 300-W training data, no commercial use"
_DLIB_LICENSE_FREE = "CC0 1.0 (dlib-models README)"

# ---------------------------------------------------------------- face detection, landmarks, identity (offline)
register(WeightsEntry(
    name="dlib-shape-predictor-68",
    filename="shape_predictor_68_face_landmarks.dat",
    description="dlib 68-point facial landmark regressor (iBUG 300-W)",
    license=_DLIB_LICENSE_68,
    used_by=("bfrcore.faces (landmarks, alignment)", "evaluation LMD", "baselines landmarks"),
    url=_DLIB + "shape_predictor_68_face_landmarks.dat.bz2",
    compression="bz2",
    sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    size=99693937,
    package_file=("face_recognition_models", "models/shape_predictor_68_face_landmarks.dat"),
    origin="https://github.com/davisking/dlib-models",
    notes="sha256 computed by us on the copy in face-recognition-models 0.3.0",
))
register(WeightsEntry(
    name="dlib-shape-predictor-5",
    filename="shape_predictor_5_face_landmarks.dat",
    description="dlib 5-point landmark regressor (eye corners, nose)",
    license=_DLIB_LICENSE_FREE,
    used_by=("bfrcore.faces (identity embedding chips)",),
    url=_DLIB + "shape_predictor_5_face_landmarks.dat.bz2",
    compression="bz2",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    size=9150489,
    package_file=("face_recognition_models", "models/shape_predictor_5_face_landmarks.dat"),
    origin="https://github.com/davisking/dlib-models",
    notes="sha256 computed by us on the copy in face-recognition-models 0.3.0",
))
register(WeightsEntry(
    name="dlib-resnet-face-v1",
    filename="dlib_face_recognition_resnet_model_v1.dat",
    description="dlib ResNet-29 face descriptor, 128-D (99.38% LFW)",
    license=_DLIB_LICENSE_FREE,
    used_by=("celebref.identity (offline default)", "evaluation identity distance (dlib backend)"),
    url=_DLIB + "dlib_face_recognition_resnet_model_v1.dat.bz2",
    compression="bz2",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    size=22466066,
    package_file=("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat"),
    origin="https://github.com/davisking/dlib-models",
    notes="sha256 computed by us on the copy in face-recognition-models 0.3.0",
))
register(WeightsEntry(
    name="dlib-mmod-detector",
    filename="mmod_human_face_detector.dat",
    description="dlib CNN (MMOD) face detector",
    license=_DLIB_LICENSE_FREE,
    used_by=("bfrcore.faces (detector='dlib-cnn')",),
    url=_DLIB + "mmod_human_face_detector.dat.bz2",
    compression="bz2",
    sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    size=729940,
    package_file=("face_recognition_models", "models/mmod_human_face_detector.dat"),
    origin="https://github.com/davisking/dlib-models",
    notes="sha256 computed by us on the copy in face-recognition-models 0.3.0",
))
for _net, _sha, _size in (
    ("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570),
    ("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147),
    ("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269),
):
    register(WeightsEntry(
        name=f"mtcnn-{_net}",
        filename=f"{_net}.pt",
        description=f"MTCNN {_net.upper()} (facenet-pytorch port of Zhang et al. 2016)",
        license="MIT (facenet-pytorch)",
        used_by=("bfrcore.faces (detector='mtcnn')",),
        url=f"https://github.com/timesler/facenet-pytorch/raw/master/data/{_net}.pt",
        sha256=_sha,
        size=_size,
        package_file=("facenet_pytorch", f"data/{_net}.pt"),
        origin="https://github.com/timesler/facenet-pytorch",
        notes="sha256 computed by us on the copy in facenet-pytorch 2.5.3",
    ))

register(WeightsEntry(
    name="insightface-buffalo_l",
    filename="buffalo_l.zip",
    kind="zip-dir",
    members=(
        ("det_10g.onnx", "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91"),
        ("w600k_r50.onnx", "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43"),
    ),
    description="InsightFace buffalo_l pack: SCRFD-10G detector + ArcFace R50 (WebFace600K) recogniser",
    license="InsightFace pretrained models: non-commercial research only",
    used_by=("bfrcore.faces (detector='insightface')", "evaluation identity (arcface, reporting default)"),
    url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    upstream_paths=("{insightface_root}/models/buffalo_l",),
    origin="https://github.com/deepinsight/insightface/tree/master/python-package",
    notes="zip and member sha256s as published in several downstream model manifests (agreeing); zip 288,621,354 bytes",
))
register(WeightsEntry(
    name="arcface-resnet18",
    content="arcface-resnet18",
    filename="arcface_resnet18.pth",
    description="ArcFace ResNet-18 (128x128 grey input) used by GFPGAN's identity loss and VQFR/RestoreFormer ID metric",
    license="Apache-2.0 (GFPGAN release asset)",
    used_by=("evaluation identity (arcface_resnet18 recipe)", "baselines identity loss"),
    notes="keys may carry a DataParallel 'module.' prefix; the loader strips it",
    url="https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth",
    upstream_paths=("{home}/.cache/gfpgan/arcface_resnet18.pth",),
    origin="https://github.com/TencentARC/GFPGAN",
))
register(WeightsEntry(
    name="facexlib-awing-wflw",
    content="awing-fan-4hg-98",
    filename="alignment_WFLW_4HG.pth",
    description="AWing FAN, 98 WFLW landmarks (VQFR's landmark distance)",
    license="facexlib release (MIT code; WFLW-trained weights)",
    used_by=("evaluation LMD (awing backend)",),
    url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth",
    origin="https://github.com/xinntao/facexlib",
))

# ---------------------------------------------------------------- perceptual metrics and losses
register(WeightsEntry(
    name="lpips-alex-v0.1",
    filename="alex.pth",
    description="LPIPS v0.1 linear heads for AlexNet",
    license="BSD-2-Clause (richzhang/PerceptualSimilarity)",
    used_by=("evaluation LPIPS (alex)",),
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    size=6009,
    package_file=("lpips", "weights/v0.1/alex.pth"),
    upstream_paths=("{torch_home}/hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth",),
    origin="https://github.com/richzhang/PerceptualSimilarity",
    notes="ships in the lpips wheel; pyiqa's LPIPS_v0.1_alex-df73285e.pth is the same file",
))
register(WeightsEntry(
    name="lpips-vgg-v0.1",
    filename="vgg.pth",
    description="LPIPS v0.1 linear heads for VGG16",
    license="BSD-2-Clause (richzhang/PerceptualSimilarity)",
    used_by=("evaluation LPIPS (vgg, the BFR reporting convention)",),
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    size=7289,
    package_file=("lpips", "weights/v0.1/vgg.pth"),
    upstream_paths=("{torch_home}/hub/pyiqa/LPIPS_v0.1_vgg-a78928a0.pth",),
    origin="https://github.com/richzhang/PerceptualSimilarity",
    notes="ships in the lpips wheel; pyiqa's LPIPS_v0.1_vgg-a78928a0.pth is the same file",
))
for _name, _file, _what, _users, _sha, _size in (
    ("torchvision-alexnet", "alexnet-owt-7be5be79.pth", "AlexNet ImageNet weights (LPIPS alex backbone)",
     ("evaluation LPIPS (alex)",), "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", 244408911),
    ("torchvision-vgg16", "vgg16-397923af.pth", "VGG16 ImageNet weights (LPIPS vgg backbone)",
     ("evaluation LPIPS (vgg)",), "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553433881),
    ("torchvision-vgg19", "vgg19-dcbb9e9d.pth", "VGG19 ImageNet weights (DFDNet features, perceptual loss)",
     ("baselines DFDNet", "baselines perceptual loss"),
     "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", 574673361),
):
    register(WeightsEntry(
        name=_name,
        filename=_file,
        description=_what,
        license="BSD-3-Clause (torchvision); trained on ImageNet (non-commercial terms)",
        used_by=_users,
        url=_TV + _file,
        sha256=_sha,
        size=_size,
        sha256_prefix=_file.rsplit("-", 1)[1].split(".")[0],
        upstream_paths=(f"{{torch_home}}/hub/checkpoints/{_file}",),
        origin="https://pytorch.org/vision/stable/models.html",
    ))

# ---------------------------------------------------------------- distribution / no-reference metrics
register(WeightsEntry(
    name="pytorch-fid-inception",
    filename="pt_inception-2015-12-05-6726825d.pth",
    description="FID Inception-v3 (TF 2015-12-05 graph ported by pytorch-fid)",
    license="Apache-2.0 (pytorch-fid)",
    used_by=("evaluation FID/KID",),
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256_prefix="6726825d",
    size=95628359,
    upstream_paths=(
        "{torch_home}/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth",
        "{torch_home}/hub/pyiqa/pt_inception-2015-12-05-6726825d.pth",
    ),
    origin="https://github.com/mseitzer/pytorch-fid",
))
register(WeightsEntry(
    name="ffhq512-fid-stats-clean",
    content="fid-stats-npz-2048",
    filename="ffhq_clean_trainval70k_512.npz",
    description="FFHQ 70k at 512, clean-fid Inception statistics (mu, sigma), as used by pyiqa/ReF-LDM",
    license="statistics of FFHQ (CC BY-NC-SA 4.0)",
    used_by=("evaluation FID vs FFHQ-512",),
    url=_PYIQA + "ffhq_clean_trainval70k_512.npz",
    upstream_paths=("{torch_home}/hub/pyiqa/ffhq_clean_trainval70k_512.npz",),
    origin="https://github.com/chaofengc/IQA-PyTorch",
))
register(WeightsEntry(
    name="ffhq512-fid-stats-basicsr",
    filename="inception_FFHQ_512-f7b384ab.pth",
    description="FFHQ 512 Inception statistics (mean, cov; 50k samples) from BasicSR, used by VQFR/RestoreFormer",
    license="statistics of FFHQ (CC BY-NC-SA 4.0)",
    used_by=("evaluation FID vs FFHQ-512 (BasicSR convention)",),
    url="https://drive.google.com/drive/folders/1QF9KoGbx9iGqCzF1bkSyQ7lWaJ7aGqq6 (BasicSR docs/Metrics.md)",
    direct_download=False,
    sha256_prefix="f7b384ab",
    origin="https://github.com/XPixelGroup/BasicSR/blob/master/docs/Metrics.md",
))
register(WeightsEntry(
    name="niqe-basicsr",
    filename="niqe_pris_params.npz",
    description="NIQE pristine model (mu, cov, 7x7 window) from BasicSR",
    license="Apache-2.0 (BasicSR)",
    used_by=("evaluation NIQE (basicsr convention)", "celebref.quality NIQE"),
    url="https://raw.githubusercontent.com/XPixelGroup/BasicSR/master/basicsr/metrics/niqe_pris_params.npz",
    pypi_archive=PypiArchiveSource(
        url="https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de39648c/basicsr-1.4.2.tar.gz",
        archive_sha256="b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87",
        member="basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz",
    ),
    sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
    size=11850,
    origin="https://github.com/XPixelGroup/BasicSR",
    notes="fetched from the basicsr 1.4.2 sdist on PyPI (archive hash published by PyPI); sha256 computed by us",
))
register(WeightsEntry(
    name="niqe-pyiqa",
    content="niqe-mat-36",
    filename="niqe_modelparameters.mat",
    description="NIQE pristine model as used by pyiqa 'niqe'",
    license="pyiqa weights (PolyForm-Noncommercial-1.0.0 for pyiqa)",
    used_by=("evaluation NIQE (pyiqa convention)",),
    url=_PYIQA + "niqe_modelparameters.mat",
    upstream_paths=("{torch_home}/hub/pyiqa/niqe_modelparameters.mat",),
    origin="https://github.com/chaofengc/IQA-PyTorch",
))
register(WeightsEntry(
    name="musiq-koniq",
    filename="musiq_koniq_ckpt-e95806b9.pth",
    description="MUSIQ trained on KonIQ-10k (pyiqa 'musiq')",
    license="pyiqa weights (PolyForm-Noncommercial-1.0.0 for pyiqa)",
    used_by=("evaluation MUSIQ", "celebref.quality MUSIQ"),
    url=_PYIQA + "musiq_koniq_ckpt-e95806b9.pth",
    sha256_prefix="e95806b9",
    upstream_paths=("{torch_home}/hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth",),
    origin="https://github.com/chaofengc/IQA-PyTorch",
))

register(WeightsEntry(
    name="dists-pyiqa",
    content="dists-alpha-beta",
    filename="DISTS_weights-f5e65c96.pth",
    description="DISTS learned weights alpha, beta (pyiqa 'dists'; VGG16 trunk from torchvision-vgg16)",
    license="pyiqa weights (PolyForm-Noncommercial-1.0.0 for pyiqa); DISTS code MIT (dingkeyan93/DISTS)",
    used_by=("evaluation DISTS",),
    url=_PYIQA + "DISTS_weights-f5e65c96.pth",
    sha256_prefix="f5e65c96",
    upstream_paths=("{torch_home}/hub/pyiqa/DISTS_weights-f5e65c96.pth",),
    origin="https://github.com/chaofengc/IQA-PyTorch (pyiqa/archs/dists_arch.py default_model_urls)",
))
register(WeightsEntry(
    name="clip-rn50",
    filename="RN50.pt",
    description="OpenAI CLIP ResNet-50 (TorchScript archive), the backbone of pyiqa 'clipiqa'",
    license="MIT (openai/CLIP)",
    used_by=("evaluation CLIP-IQA",),
    url="https://openaipublic.azureedge.net/clip/models/"
        "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
    upstream_paths=("{torch_home}/hub/clip/RN50.pt", "{home}/.cache/clip/RN50.pt"),
    origin="https://github.com/openai/CLIP (clip/clip.py _MODELS; pyiqa/archs/clip_model.py)",
    notes="sha256 published in the download URL itself (openai/CLIP checks it the same way)",
))
register(WeightsEntry(
    name="maniqa-koniq",
    content="maniqa-pyiqa",
    filename="ckpt_koniq10k.pt",
    description="MANIQA trained on KonIQ-10k, full model incl. its ViT-B/8 (pyiqa 'maniqa')",
    license="pyiqa weights (PolyForm-Noncommercial-1.0.0 for pyiqa); MANIQA code Apache-2.0 (IIGROUP/MANIQA)",
    used_by=("evaluation MANIQA",),
    url=_PYIQA + "ckpt_koniq10k.pt",
    upstream_paths=("{torch_home}/hub/pyiqa/ckpt_koniq10k.pt",),
    origin="https://github.com/chaofengc/IQA-PyTorch (pyiqa/archs/maniqa_arch.py default_model_urls)",
    notes="no published hash; the file must hold every tensor of pyiqa's MANIQA (the ViT included), checked on "
          "import/fetch",
))

# ---------------------------------------------------------------- official restoration checkpoints
register(WeightsEntry(
    name="dmdnet-official",
    content="dmdnet-paper",
    filename="DMDNet.pth",
    description="DMDNet (TPAMI 2022) official checkpoint: state_dict incl. generic dictionary buffers",
    license="CC BY-NC-SA 4.0 (DMDNet README)",
    used_by=("baselines dmdnet --weights dmdnet-official",),
    url="https://github.com/csxmli2016/DMDNet/releases/download/v1/DMDNet.pth",
    origin="https://github.com/csxmli2016/DMDNet",
))
register(WeightsEntry(
    name="asffnet512-official",
    content="asffnet512-paper",
    filename="ASFFNet512.pth",
    description="ASFFNet re-implemented at 512 by the authors (state dict under 'params')",
    license="authors' release, non-commercial research (no licence file; sibling repos use CC BY-NC-SA 4.0)",
    used_by=("baselines asffnet --weights asffnet512-official",),
    url="https://drive.google.com/file/d/13kjKkS6SQjiVYSxD4HfUhIiYv_oNGHsD/view (ASFFNet512 checkpoints/README.md)",
    direct_download=False,
    origin="https://github.com/csxmli2016/ASFFNet512",
))
register(WeightsEntry(
    name="dfdnet-official",
    content="dfdnet-paper",
    filename="latest_net_G.pth",
    description="DFDNet (ECCV 2020) official generator (checkpoints/facefh_dictionary/latest_net_G.pth)",
    license="CC BY-NC-SA 4.0 (DFDNet README)",
    used_by=("baselines dfdnet --weights dfdnet-official",),
    url="https://drive.google.com/drive/folders/1bayYIUMCSGmoFPyd4Uu2Uwn347RW-vl5 (DFDNet README)",
    direct_download=False,
    origin="https://github.com/csxmli2016/DFDNet",
))
register(WeightsEntry(
    name="dfdnet-dictionary512",
    content="dfdnet-dictionary-512",
    filename="DictionaryCenter512.zip",
    kind="zip-dir",
    members=(
        *((f"{part}_{scale}_center.npy", None) for part in ("left_eye", "right_eye", "nose", "mouth")
          for scale in (256, 128, 64, 32)),
    ),
    description="DFDNet K-means component dictionaries at 512 ({part}_{256,128,64,32}_center.npy)",
    license="CC BY-NC-SA 4.0 (DFDNet README)",
    used_by=("baselines dfdnet --weights dfdnet-official",),
    url="https://drive.google.com/drive/folders/1bayYIUMCSGmoFPyd4Uu2Uwn347RW-vl5 (DFDNet README)",
    direct_download=False,
    origin="https://github.com/csxmli2016/DFDNet",
))
