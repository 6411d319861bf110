! Streaming (noisy, clean) batches of a dataset to the GPU ahead of the steps, as the Python reader
! does (cudnn_denoise/data/reader.py): several reads in flight, pinned host buffers, a copy stream
! of its own, events, and float16 files widened on the GPU.
!
! Batch b (0-based, of the whole run) holds samples k*B .. k*B+B-1, k = b mod batches_per_epoch:
! the order of `train --no-shuffle` (with --drop-last when the count does not divide by B). SLOTS
! batches are in flight: batch b is read into slot b mod SLOTS by two threads (noisy and clean
! file: module denoise_read_jobs) SLOTS - 1 steps before its step, and its copy to the device is
! queued while the step before it runs. A float16 set (dataset.json's dtype) is read as it is, 2
! bytes a value, copied so to the device and widened there by one cudnnTransformTensor per file
! (legacy 4-d descriptors, HALF to FLOAT) on the copy stream, as Python's reader does; the model
! always receives float32.
!   reader_open(...)               open the files, make the buffers
!   reader_start(b)                start reading batch b (once its slot's last copy has run)
!   reader_queue(b)                wait for b's reads; queue its copy (and widening)
!   reader_batch(b, stream, x, y)  make `stream` wait for that copy; x, y: the device buffers
!   reader_release(b, stream)      the step on `stream` that reads batch b is queued: the slot is
!                                    free again once it has run
module denoise_reader
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int64
  use cudnn_interfaces
  use denoise_check, only: check_cuda, check_cudnn
  use denoise_dataset_meta, only: dataset_meta_t
  use denoise_read_jobs, only: read_job_t, open_file, close_file, read_start, read_wait
  implicit none
  private
  public :: SLOTS, reader_open, reader_start, reader_queue, reader_batch, reader_release, &
      reader_close, reader_wait_seconds

  integer, parameter :: SLOTS = 4                 ! batches in flight (Python's prefetch)
  type(dataset_meta_t) :: data
  integer :: batch = 0, batches_per_epoch = 0
  integer(c_int) :: noisy_fd = -1, clean_fd = -1
  integer(c_size_t) :: file_bytes = 0             ! of one batch in a file (2 or 4 bytes a value)
  integer(c_size_t) :: batch_bytes = 0            ! of one float32 batch
  type(c_ptr) :: host_x(SLOTS), host_y(SLOTS)     ! pinned: the files' bytes
  type(c_ptr) :: dev_x(SLOTS), dev_y(SLOTS)       ! float32 batches
  type(c_ptr) :: half_x(SLOTS), half_y(SLOTS)     ! float16: the files' bytes on the device
  type(c_ptr) :: copied(SLOTS), released(SLOTS), copy_stream
  type(c_ptr) :: cudnn = c_null_ptr, half_desc = c_null_ptr, float_desc = c_null_ptr
  type(read_job_t), target :: jobs(2, SLOTS)      ! (noisy or clean, slot)
  integer(int64) :: queued(SLOTS) = -1            ! the batch whose copy a slot holds
  integer(int64) :: wait_ticks = 0                ! host time spent waiting for reads
  real(c_float), target, save :: one = 1, zero = 0

contains

  subroutine reader_open(dataset, batch_size, batches, keep_cache)
    type(dataset_meta_t), intent(in) :: dataset
    integer, intent(in) :: batch_size, batches
    logical, intent(in) :: keep_cache             ! else each range leaves the page cache once read
    integer :: s
    data = dataset
    batch = batch_size
    batches_per_epoch = batches
    batch_bytes = 4_c_size_t * batch * data%height * data%width
    file_bytes = batch_bytes / merge(2, 1, data%half)
    noisy_fd = open_file(data%noisy)
    clean_fd = open_file(data%clean)
    call check_cuda(cudaStreamCreate(copy_stream), "cudaStreamCreate (copies)")
    do s = 1, SLOTS
      call check_cuda(cudaMallocHost(host_x(s), file_bytes), "cudaMallocHost (noisy batch)")
      call check_cuda(cudaMallocHost(host_y(s), file_bytes), "cudaMallocHost (clean batch)")
      call check_cuda(cudaMalloc(dev_x(s), batch_bytes), "cudaMalloc (noisy batch)")
      call check_cuda(cudaMalloc(dev_y(s), batch_bytes), "cudaMalloc (clean batch)")
      if (data%half) then
        call check_cuda(cudaMalloc(half_x(s), file_bytes), "cudaMalloc (noisy float16 batch)")
        call check_cuda(cudaMalloc(half_y(s), file_bytes), "cudaMalloc (clean float16 batch)")
      end if
      call check_cuda(cudaEventCreate(copied(s)), "cudaEventCreate")
      call check_cuda(cudaEventCreate(released(s)), "cudaEventCreate")
      jobs(1, s) = read_job_t(fd=noisy_fd, drop=merge(0, 1, keep_cache), buffer=host_x(s), &
          bytes=int(file_bytes, c_int64_t))
      jobs(2, s) = read_job_t(fd=clean_fd, drop=merge(0, 1, keep_cache), buffer=host_y(s), &
          bytes=int(file_bytes, c_int64_t))
    end do
    if (data%half) call make_widening()
  end subroutine reader_open

  ! cudnnTransformTensor's handle (on the copy stream) and its two (N, 1, H, W) descriptors
  subroutine make_widening()
    call check_cudnn(cudnnCreate(cudnn), "cudnnCreate (reader)")
    call check_cudnn(cudnnSetStream(cudnn, copy_stream), "cudnnSetStream (reader)")
    call check_cudnn(cudnnCreateTensorDescriptor(half_desc), "cudnnCreateTensorDescriptor")
    call check_cudnn(cudnnCreateTensorDescriptor(float_desc), "cudnnCreateTensorDescriptor")
    call check_cudnn(cudnnSetTensor4dDescriptor(half_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_HALF, &
        int(batch, c_int), 1, int(data%height, c_int), int(data%width, c_int)), &
        "cudnnSetTensor4dDescriptor (float16 batch)")
    call check_cudnn(cudnnSetTensor4dDescriptor(float_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, &
        int(batch, c_int), 1, int(data%height, c_int), int(data%width, c_int)), &
        "cudnnSetTensor4dDescriptor (float32 batch)")
  end subroutine make_widening

  integer function slot(b)
    integer(int64), intent(in) :: b
    slot = int(mod(b, int(SLOTS, int64))) + 1
  end function slot

  ! Start the two reads of batch b into its slot's pinned buffers, once the last copy out of them
  ! has run.
  subroutine reader_start(b)
    integer(int64), intent(in) :: b
    integer :: s, f
    s = slot(b)
    call check_cuda(cudaEventSynchronize(copied(s)), "cudaEventSynchronize (copied)")
    do f = 1, 2
      jobs(f, s)%offset = mod(b, int(batches_per_epoch, int64)) * int(file_bytes, int64)
      call read_start(jobs(f, s))
    end do
  end subroutine reader_start

  ! Wait for batch b's reads, then queue its copy (and widening) on the copy stream behind the
  ! step that last read the slot's device buffers.
  subroutine reader_queue(b)
    integer(int64), intent(in) :: b
    integer(int64) :: before, after
    integer :: s
    s = slot(b)
    if (queued(s) == b) return
    call system_clock(before)
    call read_wait(jobs(1, s), data%noisy)
    call read_wait(jobs(2, s), data%clean)
    call system_clock(after)
    wait_ticks = wait_ticks + (after - before)
    call check_cuda(cudaStreamWaitEvent(copy_stream, released(s), 0), "cudaStreamWaitEvent (released)")
    if (data%half) then
      call copy_widened(half_x(s), host_x(s), dev_x(s))
      call copy_widened(half_y(s), host_y(s), dev_y(s))
    else
      call check_cuda(cudaMemcpyAsync(dev_x(s), host_x(s), batch_bytes, cudaMemcpyHostToDevice, &
          copy_stream), "cudaMemcpyAsync (noisy batch)")
      call check_cuda(cudaMemcpyAsync(dev_y(s), host_y(s), batch_bytes, cudaMemcpyHostToDevice, &
          copy_stream), "cudaMemcpyAsync (clean batch)")
    end if
    call check_cuda(cudaEventRecord(copied(s), copy_stream), "cudaEventRecord (copied)")
    queued(s) = b
  end subroutine reader_queue

  subroutine copy_widened(half, host, float)
    type(c_ptr), intent(in) :: half, host, float
    call check_cuda(cudaMemcpyAsync(half, host, file_bytes, cudaMemcpyHostToDevice, copy_stream), &
        "cudaMemcpyAsync (float16 batch)")
    call check_cudnn(cudnnTransformTensor(cudnn, c_loc(one), half_desc, half, c_loc(zero), &
        float_desc, float), "cudnnTransformTensor (float16 batch to float32)")
  end subroutine copy_widened

  ! Make `stream` wait for batch b's copy; x and y are its device buffers.
  subroutine reader_batch(b, stream, x, y)
    integer(int64), intent(in) :: b
    type(c_ptr), intent(in) :: stream
    type(c_ptr), intent(out) :: x, y
    integer :: s
    call reader_queue(b)
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

  ! Seconds the host waited for reads to finish: the steps wait for data only when the reads in
  ! flight fall behind the GPU.
  real(c_double) function reader_wait_seconds()
    integer(int64) :: rate
    call system_clock(count_rate=rate)
    reader_wait_seconds = real(wait_ticks, c_double) / rate
  end function reader_wait_seconds

  subroutine reader_close()
    integer :: s
    do s = 1, SLOTS                               ! reads still running (a signal stopped the run)
      call read_wait(jobs(1, s), data%noisy)
      call read_wait(jobs(2, s), data%clean)
    end do
    call check_cuda(cudaStreamSynchronize(copy_stream), "cudaStreamSynchronize (copies)")
    do s = 1, SLOTS
      call check_cuda(cudaFree(dev_x(s)), "cudaFree")
      call check_cuda(cudaFree(dev_y(s)), "cudaFree")
      if (data%half) then
        call check_cuda(cudaFree(half_x(s)), "cudaFree")
        call check_cuda(cudaFree(half_y(s)), "cudaFree")
      end if
      call check_cuda(cudaFreeHost(host_x(s)), "cudaFreeHost")
      call check_cuda(cudaFreeHost(host_y(s)), "cudaFreeHost")
      call check_cuda(cudaEventDestroy(copied(s)), "cudaEventDestroy")
      call check_cuda(cudaEventDestroy(released(s)), "cudaEventDestroy")
    end do
    if (data%half) then
      call check_cudnn(cudnnDestroyTensorDescriptor(half_desc), "cudnnDestroyTensorDescriptor")
      call check_cudnn(cudnnDestroyTensorDescriptor(float_desc), "cudnnDestroyTensorDescriptor")
      call check_cudnn(cudnnDestroy(cudnn), "cudnnDestroy (reader)")
    end if
    call check_cuda(cudaStreamDestroy(copy_stream), "cudaStreamDestroy")
    call close_file(noisy_fd)
    call close_file(clean_fd)
  end subroutine reader_close

end module denoise_reader
