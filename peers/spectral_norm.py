"""Spectral-norm gain for output comparisons of two implementations that load the same random weights."""

from __future__ import annotations


def set_spectral_gain(model, gain: float, seed: int = 0) -> None:
    """Set the power-iteration vector ``weight_u`` of every old-style spectral-norm layer so that its estimate
    sigma = u^T W v is ``sigma_max / gain``: in eval mode the layer then multiplies by ``gain`` instead of being
    1-Lipschitz. Random weights through DMDNet's ~60 normalised layers pass almost nothing to the output
    (specific and generic outputs differ by 6e-6); at gain 1.3 they differ by 6e-3, so an output comparison of
    two implementations that load the same state dict (u included) has power. Needs converged u, v."""
    import torch
    from torch.nn.utils.spectral_norm import SpectralNorm

    g = torch.Generator().manual_seed(seed)
    beta = (gain**2 - 1) ** 0.5
    with torch.no_grad():
        for mod in model.modules():
            for hook in mod._forward_pre_hooks.values():
                if isinstance(hook, SpectralNorm):
                    u = getattr(mod, hook.name + "_u")
                    r = torch.randn(u.shape, generator=g, dtype=u.dtype)
                    r -= (r @ u) * u  # orthogonal to u = W v / sigma_max, so u'^T W v = sigma_max / |u + beta r|
                    u.copy_((u + beta * r / r.norm()) / (1 + beta**2) ** 0.5)
