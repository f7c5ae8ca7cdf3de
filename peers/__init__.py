"""Peer implementations and comparison helpers shared by tests/ and benchmarks/ (never by the suite itself).

- :mod:`peers.basicsr_metrics`: a NumPy/OpenCV transcription of BasicSR's PSNR/SSIM, the reference the metric
  tests compare against and the peer ``benchmarks/bench_metrics.py`` times;
- :mod:`peers.spectral_norm`: ``set_spectral_gain``, which makes random DMDNet weights pass signal to the output so
  that an output comparison of two implementations has power (tests/baselines/test_dmdnet_authors.py,
  ``benchmarks/bench_dmdnet.py``).

Not installed with the suite (like tests/ and benchmarks/); both import it from the repository root.
"""
