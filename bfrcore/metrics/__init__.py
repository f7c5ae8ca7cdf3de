"""Pure metric functions (no registry, no models): PSNR/SSIM/MS-SSIM kernels and NIQE, used by the build's
quality stage and by evaluation."""
