"""What the Fortran port shares with Python: the calls it makes, in order, and the numbers it diffs.

calls.py  a training step's calls, in order, with their arguments (what plan prints)
trace.py  the calls a run really made, recorded and rendered in the same notation
declarations.py fortran_source.py  the declared C API read from cffi_build/; the generated modules
checksum.py  the one checksum both programs print over a float32 buffer
dump_format.py  one step's every intermediate as files (dump)
algorithm_table.py engine_table.py table_text.py  the algorithms and graph-API engines train
            chose, as text the Fortran program reads
"""
