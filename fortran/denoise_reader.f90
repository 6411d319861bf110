! Streaming (noisy, clean) batches of a dataset to the GPU ahead of the steps, as the Python reader
! does (cudnn_denoise/data/reader.py): pinned host buffers, a copy stream of its own, events.
!
! Batch b (0-based, of the whole run) holds samples k*B .. k*B+B-1, k = b mod batches_per_epoch:
! the order of `train --no-shuffle` (with --drop-last when the count does not divide by B). Two
! slots alternate: once step b is queued, the host reads batch b+1 into the other slot's pinned
! buffers while the GPU computes, and queues its copy. The reads are plain (synchronous) stream
! READs, one file after the other: gfortran 12's asynchronous READ returned from WAIT before the
! data had arrived. A wrong sample would change every loss after it: benchmarks/fortran_parity.py,
! bit for bit with Python, is the check that these reads are right.
!   reader_open(...)               open the files, make the buffers
!   reader_load(b)                 read batch b into its slot's pinned buffers, queue the copy
!   reader_batch(b, stream, x, y)  make `stream` wait for that copy; x, y: the device buffers
!   reader_release(b, stream)      the step on `stream` that reads batch b is queued: the slot is
!                                    free again once it has run
module denoise_reader
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int64
  use cudnn_interfaces
  use denoise_check, only: check_cuda, fail, int_text
  implicit none
  private
  public :: reader_open, reader_load, reader_batch, reader_release, reader_close, &
      reader_read_seconds

  integer, parameter :: SLOTS = 2
  integer :: noisy_unit = -1, clean_unit = -1, batch = 0, batches_per_epoch = 0
  integer(int64) :: sample_floats = 0                ! H*W
  integer(c_size_t) :: batch_bytes = 0
  character(len=:), allocatable :: noisy_path, clean_path
  ! (B*H*W, SLOTS) floats each, in pinned memory
  real(c_float), pointer :: host_x(:, :) => null(), host_y(:, :) => null()
  type(c_ptr) :: host_x_ptr = c_null_ptr, host_y_ptr = c_null_ptr
  type(c_ptr) :: dev_x(SLOTS), dev_y(SLOTS), copied(SLOTS), released(SLOTS), copy_stream
  integer(int64) :: read_ticks = 0                   ! host time spent reading

contains

  subroutine reader_open(noisy, clean, height, width, batch_size, batches)
    character(len=*), intent(in) :: noisy, clean
    integer, intent(in) :: height, width, batch_size, batches
    integer :: s
    noisy_path = noisy
    clean_path = clean
    batch = batch_size
    batches_per_epoch = batches
    sample_floats = int(height, int64) * width
    batch_bytes = 4_c_size_t * batch * sample_floats
    noisy_unit = open_samples(noisy)
    clean_unit = open_samples(clean)
    call check_cuda(cudaMallocHost(host_x_ptr, batch_bytes * SLOTS), "cudaMallocHost (noisy batches)")
    call check_cuda(cudaMallocHost(host_y_ptr, batch_bytes * SLOTS), "cudaMallocHost (clean batches)")
    call c_f_pointer(host_x_ptr, host_x, [batch * sample_floats, int(SLOTS, int64)])
    call c_f_pointer(host_y_ptr, host_y, [batch * sample_floats, int(SLOTS, int64)])
    call check_cuda(cudaStreamCreate(copy_stream), "cudaStreamCreate (copies)")
    do s = 1, SLOTS
      call check_cuda(cudaMalloc(dev_x(s), batch_bytes), "cudaMalloc (noisy batch)")
      call check_cuda(cudaMalloc(dev_y(s), batch_bytes), "cudaMalloc (clean batch)")
      call check_cuda(cudaEventCreate(copied(s)), "cudaEventCreate")
      call check_cuda(cudaEventCreate(released(s)), "cudaEventCreate")
    end do
  end subroutine reader_open

  integer function open_samples(path) result(unit)
    character(len=*), intent(in) :: path
    integer :: iostat
    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat)
    if (iostat /= 0) call fail(path // ": cannot be opened", 2)
  end function open_samples

  integer function slot(b)
    integer(int64), intent(in) :: b
    slot = int(mod(b, int(SLOTS, int64))) + 1
  end function slot

  ! Read batch b into its slot once the last copy out of it has run; queue the copy to the device
  ! once the step that last read the slot's device buffers has run.
  subroutine reader_load(b)
    integer(int64), intent(in) :: b
    integer(int64) :: byte, before, after
    integer :: s, iostat
    s = slot(b)
    call check_cuda(cudaEventSynchronize(copied(s)), "cudaEventSynchronize (copied)")
    call system_clock(before)
    byte = mod(b, int(batches_per_epoch, int64)) * batch * sample_floats * 4 + 1
    read(noisy_unit, pos=byte, iostat=iostat) host_x(:, s)
    if (iostat /= 0) call fail(noisy_path // ": cannot read at byte " // int_text(byte - 1), 2)
    read(clean_unit, pos=byte, iostat=iostat) host_y(:, s)
    if (iostat /= 0) call fail(clean_path // ": cannot read at byte " // int_text(byte - 1), 2)
    call system_clock(after)
    read_ticks = read_ticks + (after - before)
    call check_cuda(cudaStreamWaitEvent(copy_stream, released(s), 0), "cudaStreamWaitEvent (released)")
    call check_cuda(cudaMemcpyAsync(dev_x(s), c_loc(host_x(1, s)), batch_bytes, &
        cudaMemcpyHostToDevice, copy_stream), "cudaMemcpyAsync (noisy batch)")
    call check_cuda(cudaMemcpyAsync(dev_y(s), c_loc(host_y(1, s)), batch_bytes, &
        cudaMemcpyHostToDevice, copy_stream), "cudaMemcpyAsync (clean batch)")
    call check_cuda(cudaEventRecord(copied(s), copy_stream), "cudaEventRecord (copied)")
  end subroutine reader_load

  ! Make `stream` wait for batch b's copy; x and y are its device buffers.
  subroutine reader_batch(b, stream, x, y)
    integer(int64), intent(in) :: b
    type(c_ptr), intent(in) :: stream
    type(c_ptr), intent(out) :: x, y
    integer :: s
    s = slot(b)
    call check_cuda(cudaStreamWaitEvent(stream, copied(s), 0), "cudaStreamWaitEvent (copied)")
    x = dev_x(s)
    y = dev_y(s)
  end subroutine reader_batch

  subroutine reader_release(b, stream)
    integer(int64), intent(in) :: b
    type(c_ptr), intent(in) :: stream
    call check_cuda(cudaEventRecord(released(slot(b)), stream), "cudaEventRecord (released)")
  end subroutine reader_release

  ! Seconds the host spent reading: while the GPU runs a step, so the steps wait for data only
  ! when one batch's read takes longer than one step.
  real(c_double) function reader_read_seconds()
    integer(int64) :: rate
    call system_clock(count_rate=rate)
    reader_read_seconds = real(read_ticks, c_double) / rate
  end function reader_read_seconds

  subroutine reader_close()
    integer :: s
    call check_cuda(cudaStreamSynchronize(copy_stream), "cudaStreamSynchronize (copies)")
    do s = 1, SLOTS
      call check_cuda(cudaFree(dev_x(s)), "cudaFree")
      call check_cuda(cudaFree(dev_y(s)), "cudaFree")
      call check_cuda(cudaEventDestroy(copied(s)), "cudaEventDestroy")
      call check_cuda(cudaEventDestroy(released(s)), "cudaEventDestroy")
    end do
    call check_cuda(cudaStreamDestroy(copy_stream), "cudaStreamDestroy")
    nullify(host_x, host_y)
    call check_cuda(cudaFreeHost(host_x_ptr), "cudaFreeHost")
    call check_cuda(cudaFreeHost(host_y_ptr), "cudaFreeHost")
    close(noisy_unit)
    close(clean_unit)
  end subroutine reader_close

end module denoise_reader
