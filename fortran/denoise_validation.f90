! --val-data: the held-out set scored at each log line, as train's Trainer._validate does: every
! pair, in order, in batches of min(batch, count); the mean of evaluate's loss weighted by each
! batch's rows (a last batch smaller than the batch, or a set smaller than one batch, is scored by
! a second model built for its row count); and the PSNR 10 log10(R^2 / MSE) for its value range R
! (dataset.json's value_range, else [0, 1]), beside the baseline: the noisy inputs' own PSNR
! (module denoise_val_text), computed once at the start. The batches are read and copied
! synchronously (float16 ones widened on the host): a validation runs between steps, at log lines.
module denoise_validation
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int64
  use cudnn_interfaces
  use cudnn_denoise_checkpoint, only: NUM_PARAMS
  use denoise_check, only: check_cuda, fail, int_text
  use denoise_dataset_meta, only: dataset_meta_t, read_dataset_meta
  use denoise_step, only: model_t, LOSS_SLOTS, evaluate, at
  use denoise_setup, only: model_options_t, model_create, model_destroy
  use denoise_algorithms, only: algorithm_table_t
  use denoise_val_text, only: input_mse, psnr, start_line
  use cudnn_denoise_dataset, only: binary16_to_real
  implicit none
  private
  public :: validation_t, validation_open, validate, validation_close

  type :: validation_t
    type(dataset_meta_t) :: data
    integer :: batch = 0                          ! rows a batch: min(the training batch, count)
    integer :: batches = 0                        ! batches, the last one of part_rows if part_rows > 0
    integer :: part_rows = 0                      ! rows of the model `part`; 0: none
    real(c_double) :: peak = 1                    ! R = high - low
    real(c_double) :: baseline = 0                ! the noisy inputs' PSNR, dB
    real(c_float), allocatable :: x(:), target(:) ! one batch on the host
    type(c_ptr) :: dev_x = c_null_ptr, dev_target = c_null_ptr
    type(model_t) :: part                         ! for the batch of part_rows rows (Trainer._model_for)
  end type validation_t

contains

  ! The set in `folder` for the model of `batch` rows (options, stream, params: the second model's,
  ! built as that one: its algorithms by cuDNN's heuristics, as train --deterministic chooses them;
  ! an --algorithms or --engines table is for the training batch only); prints train's start line.
  subroutine validation_open(val, folder, batch, height, width, options, stream, params)
    type(validation_t), intent(out) :: val
    character(len=*), intent(in) :: folder
    integer, intent(in) :: batch, height, width
    type(model_options_t), intent(in) :: options
    type(c_ptr), intent(in) :: stream
    real(c_float), intent(in) :: params(NUM_PARAMS)
    type(model_options_t) :: heuristics
    type(algorithm_table_t) :: unused
    character(len=:), allocatable :: path
    real(c_double) :: mse
    path = folder // "/dataset.json"
    call read_dataset_meta(folder, val%data)
    if (val%data%height /= height .or. val%data%width /= width) call fail("--val-data " // path // &
        ": samples of " // int_text(int(val%data%height, c_int64_t)) // "x" // &
        int_text(int(val%data%width, c_int64_t)) // ", the training set's are " // &
        int_text(int(height, c_int64_t)) // "x" // int_text(int(width, c_int64_t)), 2)
    if (val%data%count < 1) call fail("--val-data " // path // ": holds no samples", 2)
    val%batch = min(batch, val%data%count)        ! a set smaller than one batch: one batch
    val%batches = (val%data%count + val%batch - 1) / val%batch
    val%part_rows = mod(val%data%count, val%batch)
    if (val%batch < batch) val%part_rows = val%batch
    val%peak = val%data%high - val%data%low
    mse = input_mse(val%data)
    if (.not. (abs(mse) <= huge(mse))) call fail("--val-data " // path // ": " // val%data%noisy // &
        " or " // val%data%clean // " holds a NaN or infinity (train --check-data names the sample)", 2)
    val%baseline = psnr(val%peak, mse)
    allocate(val%x(int(val%batch, int64) * height * width), val%target(int(val%batch, int64) * height * width))
    call check_cuda(cudaMalloc(val%dev_x, 4_c_size_t * size(val%x)), "cudaMalloc (validation batch)")
    call check_cuda(cudaMalloc(val%dev_target, 4_c_size_t * size(val%x)), "cudaMalloc (validation batch)")
    if (val%part_rows > 0) then
      heuristics = options
      heuristics%algorithms = ""
      if (allocated(heuristics%engines)) heuristics%engines = ""
      call model_create(val%part, int(val%part_rows, c_int), int(height, c_int), int(width, c_int), &
          heuristics, stream, params, unused)
    end if
    print '(A)', start_line(val%data, val%baseline)
  end subroutine validation_open

  ! loss: the mean over every pair (each batch's mean weighted by its rows); psnr in dB. Leaves
  ! m%x, m%target on the validation buffers (the next step sets its own).
  subroutine validate(val, m, stream, loss, val_psnr)
    type(validation_t), intent(inout), target :: val  ! c_loc of its host buffers
    type(model_t), intent(inout) :: m
    type(c_ptr), intent(in) :: stream
    real(c_double), intent(out) :: loss, val_psnr
    real(c_double) :: total
    integer :: b, rows
    integer(int64) :: plane, count
    plane = int(val%data%height, int64) * val%data%width
    total = 0
    count = 0
    m%x = val%dev_x
    m%target = val%dev_target
    if (val%part_rows > 0) then  ! the parameters of now: the second model shares them (a copy)
      val%part%x = val%dev_x
      val%part%target = val%dev_target
      call check_cuda(cudaMemcpyAsync(val%part%params, m%params, 4_c_size_t * NUM_PARAMS, &
          cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync (parameters to the validation model)")
    end if
    do b = 0, val%batches - 1
      rows = min(val%batch, val%data%count - b * val%batch)
      call read_batch(val%data%noisy, b * val%batch, plane, val%data%half, val%x(1:rows * plane))
      call read_batch(val%data%clean, b * val%batch, plane, val%data%half, val%target(1:rows * plane))
      call check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize")  ! the last evaluate
      call check_cuda(cudaMemcpy(val%dev_x, c_loc(val%x), 4_c_size_t * rows * plane, &
          cudaMemcpyHostToDevice), "cudaMemcpy (validation batch)")
      call check_cuda(cudaMemcpy(val%dev_target, c_loc(val%target), 4_c_size_t * rows * plane, &
          cudaMemcpyHostToDevice), "cudaMemcpy (validation batch)")
      if (rows == m%n) then
        total = total + batch_loss(m, stream, rows * plane) * rows
      else
        total = total + batch_loss(val%part, stream, rows * plane) * rows
      end if
      count = count + rows
    end do
    loss = total / count
    if (.not. (abs(loss) <= huge(loss))) call fail("the validation loss is not finite: the " // &
        "model diverged, or " // val%data%noisy // " holds a NaN or infinity", 3)
    val_psnr = psnr(val%peak, loss)
  end subroutine validate

  ! evaluate's loss on the batch in mm%x, mm%target: its sum of squares over numel, in double
  real(c_double) function batch_loss(mm, stream, numel) result(loss)
    type(model_t), intent(in) :: mm
    type(c_ptr), intent(in) :: stream
    integer(int64), intent(in) :: numel
    real(c_float), target :: sum
    call evaluate(mm)
    call check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    call check_cuda(cudaMemcpy(c_loc(sum), at(mm%loss_sums, 4_c_intptr_t * LOSS_SLOTS), 4_c_size_t, &
        cudaMemcpyDeviceToHost), "cudaMemcpy (validation loss)")
    loss = real(sum, c_double) / numel
  end function batch_loss

  ! the samples from `first` on of a file (of `plane` values each; as many as values holds),
  ! float16 values widened on the host (exactly: every binary16 is a float32)
  subroutine read_batch(path, first, plane, half, values)
    character(len=*), intent(in) :: path
    integer, intent(in) :: first
    integer(int64), intent(in) :: plane
    logical, intent(in) :: half
    real(c_float), intent(out) :: values(:)
    integer(c_int16_t) :: bits(size(values))
    integer :: unit, iostat
    integer(int64) :: position
    position = int(first, int64) * plane * merge(2, 4, half) + 1
    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat)
    if (iostat == 0 .and. half) then
      read(unit, pos=position, iostat=iostat) bits
      values = binary16_to_real(bits)
    else if (iostat == 0) then
      read(unit, pos=position, iostat=iostat) values
    end if
    if (iostat /= 0) call fail(path // ": cannot read the validation batch from sample " // &
        int_text(int(first, c_int64_t)), 2)
    close(unit)
  end subroutine read_batch

  subroutine validation_close(val)
    type(validation_t), intent(inout) :: val
    call check_cuda(cudaFree(val%dev_x), "cudaFree")
    call check_cuda(cudaFree(val%dev_target), "cudaFree")
    if (val%part_rows > 0) call model_destroy(val%part)
  end subroutine validation_close

end module denoise_validation
