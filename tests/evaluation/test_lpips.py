"""LPIPS: never a random trunk; with the real torchvision trunk it equals the lpips package and pyiqa's calibration.

Without the ImageNet trunk files (not available offline here) the reference test skips with a message; the
unavailable-with-fix path and the trunk loading are tested always (the latter with a seeded random torchvision
state dict written where torchvision itself would read the real one, so ``lpips.LPIPS`` is the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bfrcore import weights as wreg
from bfrcore.imageio import read_image
from evaluation.lpips import LPIPSMetric, build_lpips, load_trunk, lpips_distance
from evaluation.metrics import resolve_metrics


def test_missing_trunk_is_unavailable_with_the_fix(isolated_weights):
    r = resolve_metrics(["lpips_vgg", "lpips_alex"])
    assert not r.metrics
    assert "bench weights fetch torchvision-vgg16" in r.unavailable["lpips_vgg"]
    assert "bench weights fetch torchvision-alexnet" in r.unavailable["lpips_alex"]
    with pytest.raises(wreg.MissingWeightsError, match="torchvision-alexnet"):
        build_lpips("alex")
    with pytest.raises(Exception, match="torchvision-vgg16"):
        LPIPSMetric(net="vgg").setup("cpu")


def _lpips_oracle_images(oracles):
    root = oracles / "lpips"
    imgs = [read_image(root / f) for f in ("ex_ref.png", "ex_p0.png", "ex_p1.png")]
    return [torch.from_numpy(np.array(i)).permute(2, 0, 1)[None] for i in imgs]


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision deprecation notes raised inside lpips
def test_trunk_loading_equals_lpips_package_with_the_same_trunk(isolated_weights, oracles):
    """A seeded random AlexNet saved as torchvision's checkpoint file: lpips.LPIPS(net='alex') loads it through
    torchvision, we load it through load_trunk — the distances must be identical."""
    import lpips
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.alexnet(weights=None)
    state = tv.state_dict()
    ckpt = wreg.torch_home() / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, ckpt)
    ref_model = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()  # reads the file above
    ours = build_lpips("alex", trunk_state=state)
    ref_img, p0, p1 = _lpips_oracle_images(oracles)
    x = torch.cat([p0, p1])
    y = torch.cat([ref_img, ref_img])
    with torch.no_grad():
        ref = ref_model(x.float() / 255, y.float() / 255, normalize=True).reshape(-1)
    got = lpips_distance(ours, x, y)
    assert torch.allclose(got.float(), ref, atol=1e-7, rtol=0)
    assert float(got.min()) > 0
    # and a state dict that is not a torchvision AlexNet is refused
    bad = {k: v for k, v in state.items() if not k.startswith("features.3.")}
    with pytest.raises(KeyError, match="features.3"):
        load_trunk(ours, bad)


def test_lpips_identical_images_is_zero_and_batch_equals_single(isolated_weights, oracles):
    torch.manual_seed(1)
    import torchvision

    model = build_lpips("alex", trunk_state=torchvision.models.alexnet(weights=None).state_dict())
    ref_img, p0, p1 = _lpips_oracle_images(oracles)
    x = torch.cat([p0, p1, ref_img])
    y = torch.cat([ref_img, ref_img, ref_img])
    whole = lpips_distance(model, x, y, batch_size=3)
    single = torch.cat([lpips_distance(model, x[i:i + 1], y[i:i + 1]) for i in range(3)])
    assert torch.allclose(whole, single, atol=1e-7)
    assert float(whole[2]) == pytest.approx(0.0, abs=1e-12)


def _have_trunks() -> bool:
    return wreg.locate("torchvision-alexnet") is not None and wreg.locate("torchvision-vgg16") is not None


@pytest.mark.skipif(not _have_trunks(), reason="torchvision ImageNet trunks absent: `bench weights fetch "
                    "torchvision-alexnet torchvision-vgg16` to run the LPIPS reference test")
def test_lpips_matches_lpips_package_and_pyiqa_calibration(calibration):  # pragma: no cover - needs the trunks
    import lpips

    d, r = calibration["dist"], calibration["ref"]
    for net in ("alex", "vgg"):
        ours = lpips_distance(build_lpips(net), d, r).numpy()
        ref_model = lpips.LPIPS(net=net, version="0.1", verbose=False).eval()
        with torch.no_grad():
            ref = ref_model(d.float() / 255, r.float() / 255, normalize=True).reshape(-1).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-6)
        if net == "alex":
            np.testing.assert_allclose(ours, calibration["pyiqa"]["lpips(ours)"], atol=1e-4)
