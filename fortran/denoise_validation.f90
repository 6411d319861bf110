! --val-data: the held-out set scored at each log line, as train's Trainer._validate does: the
! mean of evaluate's loss over its full batches (in order), and the PSNR 10 log10(R^2 / MSE) for
! its value range R (dataset.json's value_range, else [0, 1]). The batches are read and copied
! synchronously (float16 ones widened on the host): a validation runs between steps, at log lines.
module denoise_validation
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int64
  use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_positive_inf
  use cudnn_interfaces
  use denoise_check, only: check_cuda, fail, int_text
  use denoise_dataset_meta, only: dataset_meta_t, read_dataset_meta
  use denoise_step, only: model_t, LOSS_SLOTS, evaluate, at
  use cudnn_denoise_dataset, only: binary16_to_real
  implicit none
  private
  public :: validation_t, validation_open, validate, validation_close

  type :: validation_t
    type(dataset_meta_t) :: data
    integer :: batch = 0, batches = 0
    real(c_double) :: peak = 1                    ! R = high - low
    real(c_float), allocatable :: x(:), target(:) ! one batch on the host
    type(c_ptr) :: dev_x = c_null_ptr, dev_target = c_null_ptr
  end type validation_t

contains

  subroutine validation_open(val, folder, batch, height, width)
    type(validation_t), intent(out) :: val
    character(len=*), intent(in) :: folder
    integer, intent(in) :: batch, height, width
    character(len=:), allocatable :: path
    path = folder // "/dataset.json"
    call read_dataset_meta(folder, val%data)
    if (val%data%height /= height .or. val%data%width /= width) call fail("--val-data " // path // &
        ": samples of " // int_text(int(val%data%height, c_int64_t)) // "x" // &
        int_text(int(val%data%width, c_int64_t)) // ", the training set's are " // &
        int_text(int(height, c_int64_t)) // "x" // int_text(int(width, c_int64_t)), 2)
    if (val%data%count < batch) call fail("--val-data " // path // ": " // &
        int_text(int(val%data%count, c_int64_t)) // " samples, fewer than one batch of " // &
        int_text(int(batch, c_int64_t)), 2)
    val%batch = batch
    val%batches = val%data%count / batch          ! full batches only, as train's
    val%peak = val%data%high - val%data%low
    allocate(val%x(int(batch, int64) * height * width), val%target(int(batch, int64) * height * width))
    call check_cuda(cudaMalloc(val%dev_x, 4_c_size_t * size(val%x)), "cudaMalloc (validation batch)")
    call check_cuda(cudaMalloc(val%dev_target, 4_c_size_t * size(val%x)), "cudaMalloc (validation batch)")
    print '(A, I0, A, G0, A)', "validation: ", val%data%count, " held-out pairs, scored at each " // &
        "log line; PSNR = 10 log10(R^2 / MSE), R = ", val%peak, ": the data range (" // &
        val%data%range_from // ")"
  end subroutine validation_open

  ! loss: the mean over the batches; psnr in dB. Leaves m%x, m%target on the validation buffers
  ! (the next step sets its own).
  subroutine validate(val, m, stream, loss, psnr)
    type(validation_t), intent(inout), target :: val  ! c_loc of its host buffers
    type(model_t), intent(inout) :: m
    type(c_ptr), intent(in) :: stream
    real(c_double), intent(out) :: loss, psnr
    real(c_float), target :: sum
    real(c_double) :: total
    integer :: b
    total = 0
    m%x = val%dev_x
    m%target = val%dev_target
    do b = 0, val%batches - 1
      call read_batch(val%data%noisy, b, val%data%half, val%x)
      call read_batch(val%data%clean, b, val%data%half, val%target)
      call check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize")  ! the last evaluate
      call check_cuda(cudaMemcpy(val%dev_x, c_loc(val%x), 4_c_size_t * size(val%x), &
          cudaMemcpyHostToDevice), "cudaMemcpy (validation batch)")
      call check_cuda(cudaMemcpy(val%dev_target, c_loc(val%target), 4_c_size_t * size(val%x), &
          cudaMemcpyHostToDevice), "cudaMemcpy (validation batch)")
      call evaluate(m)
      call check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize")
      call check_cuda(cudaMemcpy(c_loc(sum), at(m%loss_sums, 4_c_intptr_t * LOSS_SLOTS), 4_c_size_t, &
          cudaMemcpyDeviceToHost), "cudaMemcpy (validation loss)")
      total = total + real(sum, c_double) / size(val%x)
    end do
    loss = total / val%batches
    if (.not. (abs(loss) <= huge(loss))) call fail("the validation loss is not finite: the " // &
        "model diverged, or " // val%data%noisy // " holds a NaN or infinity", 3)
    psnr = ieee_value(psnr, ieee_positive_inf)
    if (loss > 0) psnr = 10 * log10(val%peak * val%peak / loss)
  end subroutine validate

  ! batch b of a file, float16 values widened on the host (exactly: every binary16 is a float32)
  subroutine read_batch(path, b, half, values)
    character(len=*), intent(in) :: path
    integer, intent(in) :: b
    logical, intent(in) :: half
    real(c_float), intent(out) :: values(:)
    integer(c_int16_t) :: bits(size(values))
    integer :: unit, iostat
    integer(int64) :: position
    position = int(b, int64) * size(values) * merge(2, 4, half) + 1
    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat)
    if (iostat == 0 .and. half) then
      read(unit, pos=position, iostat=iostat) bits
      values = binary16_to_real(bits)
    else if (iostat == 0) then
      read(unit, pos=position, iostat=iostat) values
    end if
    if (iostat /= 0) call fail(path // ": cannot read validation batch " // &
        int_text(int(b, c_int64_t)), 2)
    close(unit)
  end subroutine read_batch

  subroutine validation_close(val)
    type(validation_t), intent(inout) :: val
    call check_cuda(cudaFree(val%dev_x), "cudaFree")
    call check_cuda(cudaFree(val%dev_target), "cudaFree")
  end subroutine validation_close

end module denoise_validation
