"""Data-parallel training across processes launched by MPI: one GPU per rank.

world.py  ranks, rank 0's role, the dataset shard of each rank
nccl.py  the gradient all-reduce through NCCL (ncclAllReduce on the flat gradient buffer)
watchdog.py  any rank's failure or stall ends them all
"""
