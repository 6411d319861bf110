"""What the Fortran port shares with Python: the calls it makes, in order, and the numbers it diffs.

trace.py  a training step's cuDNN and cuBLAS calls, recorded and rendered
checksum.py  the one checksum both programs print over a float32 buffer
algorithm_table.py  the convolution algorithms train chose, written for the Fortran program
"""
