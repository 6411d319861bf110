"""cudnn_denoise: a 3-layer cryo-EM denoising CNN trained with raw cuDNN and cuBLAS calls.

The package is the reference for a Fortran port: every device computation in a training step is a
cuDNN or cuBLAS call made through cffi on CuPy buffers (see docs/). Importing it needs no GPU.
"""

__version__ = "0.1.0"
