! denoise_train: the Fortran port of `python -m cudnn_denoise.train` (legacy cuDNN step, no shuffle).
!
!   denoise_train --data DIR --init CKPT --out DIR [--max-steps N] [--epochs E] [--batch-size B]
!                 [--lr LR] [--math tf32|fp32] [--fused] [--deterministic] [--drop-last]
!                 [--algorithms FILE] [--log-every N] [--overwrite]
!
! It reads the dataset (DIR/dataset.json, noisy.bin, clean.bin: stream access) in the order that
! `train --no-shuffle` uses, the initial parameters from a checkpoint (CKPT/params.bin, or a
! params.bin), and runs the steps of module denoise_step on the first GPU; batches stream to the
! GPU ahead of the steps (module denoise_reader). It writes, into the --out folder:
!   losses.tsv      every step's loss, "step<TAB>loss" (train's format)
!   metrics.jsonl   one JSON object per log line (step, epoch, loss, average, batches_per_s, elapsed)
!   algorithms.txt  the algorithm table it used (the format --algorithms reads)
!   params.bin      the final parameters (the checkpoint layout, written atomically)
! and prints, last, the checksum lines that read_checkpoint prints for that params.bin.
! docs/fortran.md, "Running the Fortran program", gives the commands and the comparison with Python.
! Exit status: 0 done; 1 a CUDA, cuDNN or cuBLAS call failed (the line names it); 2 bad arguments,
! data, checkpoint, or no GPU.
program denoise_train
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int64, output_unit
  use cudnn_interfaces
  use cudnn_denoise_checkpoint, only: NUM_PARAMS, NUM_TENSORS, PARAM_NAMES, PARAM_OFFSETS, &
      PARAM_SIZES, read_params, write_params
  use cudnn_denoise_checksum, only: format_checksum
  use denoise_check, only: check_cuda, check_cublas, fail, int_text
  use denoise_step, only: model_t, LOSS_SLOTS, train_step
  use denoise_setup, only: model_options_t, model_create, model_destroy
  use denoise_algorithms, only: algorithm_table_t, write_table
  use denoise_reader, only: reader_open, reader_load, reader_batch, reader_release, reader_close, &
      reader_read_seconds
  implicit none

  interface
    integer(c_int) function c_mkdir(path, mode) bind(C, name="mkdir")
      import :: c_int, c_char
      implicit none
      character(kind=c_char), intent(in) :: path(*)
      integer(c_int), value :: mode
    end function c_mkdir
    integer(c_int) function c_rename(old, new) bind(C, name="rename")
      import :: c_int, c_char
      implicit none
      character(kind=c_char), intent(in) :: old(*), new(*)
    end function c_rename
  end interface

  ! what the command line asks for (train's flags and defaults)
  character(len=:), allocatable :: data_dir, init_path, out_dir
  integer :: batch = 4, epochs = 1, log_every = 100
  integer(int64) :: max_steps = -1
  real(c_double) :: lr_arg = 0.001_c_double
  logical :: drop_last = .false., overwrite = .false.
  type(model_options_t) :: options

  ! the data (dataset.json) and the run
  integer :: height, width, count, batches_per_epoch
  integer(int64) :: total_steps
  real(c_float), target :: params(NUM_PARAMS)
  type(model_t) :: m
  type(algorithm_table_t) :: table
  type(c_ptr) :: stream
  character(len=:), allocatable :: noisy_path, clean_path

  ! the loop's bookkeeping: losses still on the device, the running sum, the clock, the logs
  integer :: pending = 0, losses_unit, metrics_unit
  real(c_double) :: loss_sum = 0, last_loss = 0
  integer(int64) :: started, clock_rate
  real(c_float), target :: sums(LOSS_SLOTS)

  options%algorithms = ""
  call parse_arguments()
  call open_dataset()
  call read_initial_parameters()
  call require_gpu()
  call prepare_out_dir()
  call report_libraries()
  call check_cuda(cudaStreamCreate(stream), "cudaStreamCreate")
  call model_create(m, int(batch, c_int), int(height, c_int), int(width, c_int), options, stream, &
      params, table)
  call write_table(out_dir // "/algorithms.txt", table)
  call reader_open(noisy_path, clean_path, height, width, batch, batches_per_epoch)
  call train()
  call save_parameters()
  call release()

contains

  ! ---- the command line ----

  subroutine parse_arguments()
    integer :: i, n
    character(len=:), allocatable :: flag, math
    math = "tf32"
    data_dir = ""
    init_path = ""
    out_dir = ""
    n = command_argument_count()
    i = 1
    do while (i <= n)
      flag = argument(i)
      select case (flag)
      case ("-h", "--help")
        call usage()
        stop
      case ("--fused")
        options%fused = .true.
      case ("--deterministic")
        options%deterministic = .true.
      case ("--drop-last")
        drop_last = .true.
      case ("--overwrite")
        overwrite = .true.
      case ("--data", "--init", "--out", "--algorithms", "--math", "--max-steps", "--epochs", &
          "--batch-size", "--lr", "--log-every")
        if (i == n) call fail(flag // " needs a value", 2)
        i = i + 1
        select case (flag)
        case ("--data")
          data_dir = argument(i)
        case ("--init")
          init_path = argument(i)
        case ("--out")
          out_dir = argument(i)
        case ("--algorithms")
          options%algorithms = argument(i)
        case ("--math")
          math = argument(i)
        case ("--max-steps")
          max_steps = int_argument(i, flag, 0)
        case ("--epochs")
          epochs = int(int_argument(i, flag, 1))
        case ("--batch-size")
          batch = int(int_argument(i, flag, 1))
        case ("--log-every")
          log_every = int(int_argument(i, flag, 1))
        case ("--lr")
          lr_arg = real_argument(i, flag)
        end select
      case default
        call fail("unknown argument '" // flag // "' (--help lists them)", 2)
      end select
      i = i + 1
    end do
    if (len(data_dir) == 0 .or. len(init_path) == 0 .or. len(out_dir) == 0) &
        call fail("--data, --init and --out are required (--help)", 2)
    if (math /= "tf32" .and. math /= "fp32") call fail("--math must be tf32 or fp32, not " // math, 2)
    options%strict_fp32 = math == "fp32"
  end subroutine parse_arguments

  subroutine usage()
    print '(A)', "usage: denoise_train --data DIR --init CKPT --out DIR [--max-steps N] [--epochs E]"
    print '(A)', "                     [--batch-size B] [--lr LR] [--math tf32|fp32] [--fused]"
    print '(A)', "                     [--deterministic] [--drop-last] [--algorithms FILE]"
    print '(A)', "                     [--log-every N] [--overwrite]"
    print '(A)', "Trains the seed's CNN with the cuDNN calls of python -m cudnn_denoise.train"
    print '(A)', "--backend cudnn --no-shuffle (legacy step) and writes losses.tsv, metrics.jsonl,"
    print '(A)', "algorithms.txt and params.bin into --out. Defaults as train: batch 4, lr 0.001,"
    print '(A)', "1 epoch, tf32, a log line every 100 steps. --algorithms takes the algorithm table"
    print '(A)', "a Python run wrote (its --out/algorithms.txt); without it cuDNN's heuristics"
    print '(A)', "choose (deterministic ones with --deterministic). --drop-last: skip a partial"
    print '(A)', "last batch (as train --drop-last); without it the count must divide by the batch."
    print '(A)', "Exit: 0 done, 1 a CUDA/cuDNN/cuBLAS call failed, 2 bad input or no GPU."
  end subroutine usage

  function argument(i) result(text)
    integer, intent(in) :: i
    character(len=:), allocatable :: text
    integer :: length
    call get_command_argument(i, length=length)
    allocate(character(len=length) :: text)
    call get_command_argument(i, text)
  end function argument

  integer(int64) function int_argument(i, flag, least) result(value)
    integer, intent(in) :: i, least
    character(len=*), intent(in) :: flag
    character(len=:), allocatable :: text
    integer :: iostat
    text = argument(i)
    read(text, *, iostat=iostat) value
    if (iostat /= 0 .or. value < least) call fail(flag // " must be an integer of at least " // &
        int_text(int(least, c_int64_t)) // ", not '" // text // "'", 2)
  end function int_argument

  real(c_double) function real_argument(i, flag) result(value)
    integer, intent(in) :: i
    character(len=*), intent(in) :: flag
    character(len=:), allocatable :: text
    integer :: iostat
    text = argument(i)
    read(text, *, iostat=iostat) value
    if (iostat /= 0 .or. .not. (abs(value) <= huge(value))) &
        call fail(flag // " must be a finite number, not '" // text // "'", 2)
  end function real_argument

  ! ---- inputs ----

  ! dataset.json's height, width, count and dtype; noisy.bin and clean.bin opened for stream reads.
  subroutine open_dataset()
    character(len=:), allocatable :: meta, path
    integer(int64) :: need
    path = data_dir // "/dataset.json"
    meta = file_text(path)
    height = json_integer(meta, "height", path)
    width = json_integer(meta, "width", path)
    count = json_integer(meta, "count", path)
    if (index(meta, '"dtype"') > 0) then
      if (json_string(meta, "dtype", path) /= "float32") call fail(path // ": dtype " // &
          json_string(meta, "dtype", path) // ": this program reads float32 datasets", 2)
    end if
    if (height < 1 .or. width < 1 .or. count < 1) call fail(path // ": height, width and count " // &
        "must be positive", 2)
    if (count < batch) call fail(path // ": " // int_text(int(count, c_int64_t)) // &
        " samples, fewer than one batch of " // int_text(int(batch, c_int64_t)), 2)
    if (mod(count, batch) /= 0 .and. .not. drop_last) call fail(path // ": " // &
        int_text(int(count, c_int64_t)) // " samples leave a partial last batch of " // &
        int_text(int(mod(count, batch), c_int64_t)) // ", which this program does not train on: " // &
        "pass --drop-last (and train --drop-last)", 2)
    batches_per_epoch = count / batch
    total_steps = int(epochs, int64) * batches_per_epoch
    if (max_steps >= 0) total_steps = min(total_steps, max_steps)
    need = 4_int64 * height * width * count
    noisy_path = data_dir // "/" // json_string(meta, "noisy", path)
    clean_path = data_dir // "/" // json_string(meta, "clean", path)
    call check_size(noisy_path, need)
    call check_size(clean_path, need)
    print '(A)', "data: " // int_text(int(count, c_int64_t)) // " pairs of " // &
        int_text(int(height, c_int64_t)) // "x" // int_text(int(width, c_int64_t)) // " (" // &
        data_dir // ")"
  end subroutine open_dataset

  subroutine check_size(path, need)
    character(len=*), intent(in) :: path
    integer(int64), intent(in) :: need
    integer(int64) :: bytes
    inquire(file=path, size=bytes)
    if (bytes < 0) call fail(path // ": missing or unreadable", 2)
    if (bytes < need) call fail(path // " has " // int_text(bytes) // " bytes, fewer than the " // &
        int_text(need) // " that dataset.json's count, height and width need", 2)
  end subroutine check_size

  function file_text(path) result(text)
    character(len=*), intent(in) :: path
    character(len=:), allocatable :: text
    integer(int64) :: bytes
    integer :: unit, iostat
    inquire(file=path, size=bytes)
    if (bytes <= 0) call fail(path // ": missing or empty", 2)
    allocate(character(len=bytes) :: text)
    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat)
    if (iostat == 0) read(unit, iostat=iostat) text
    if (iostat /= 0) call fail(path // ": cannot be read", 2)
    close(unit)
  end function file_text

  ! The text after "key": up to the next comma, brace or newline (enough for dataset.json's
  ! flat integer and string fields; a JSON parser is beyond this program).
  function json_value(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: value
    integer :: start, finish
    start = index(text, '"' // key // '"')
    if (start == 0) call fail(path // ": no " // key, 2)
    start = start + len(key) + 2
    start = start + index(text(start:), ":")
    finish = start - 1 + scan(text(start:), ",}" // achar(10))
    if (finish < start) finish = len(text) + 1
    value = trim(adjustl(text(start:finish - 1)))
  end function json_value

  integer function json_integer(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: field
    integer :: iostat
    field = json_value(text, key, path)
    read(field, *, iostat=iostat) value
    if (iostat /= 0) call fail(path // ": " // key // " is not an integer", 2)
  end function json_integer

  function json_string(text, key, path) result(value)
    character(len=*), intent(in) :: text, key, path
    character(len=:), allocatable :: value
    value = json_value(text, key, path)
    if (len(value) < 2) call fail(path // ": " // key // " is not a string", 2)
    if (value(1:1) /= '"' .or. value(len(value):) /= '"') &
        call fail(path // ": " // key // " is not a string", 2)
    value = value(2:len(value) - 1)
  end function json_string

  ! --init: a checkpoint folder (its params.bin) or a params.bin itself.
  subroutine read_initial_parameters()
    character(len=:), allocatable :: path, errmsg
    integer :: ierr
    path = init_path
    if (len(path) < 4) then
      path = path // "/params.bin"
    else if (path(len(path) - 3:) /= ".bin") then
      path = path // "/params.bin"
    end if
    call read_params(path, params, ierr, errmsg)
    if (ierr /= 0) call fail("--init: " // errmsg, 2)
    print '(A)', "initial parameters from " // path
  end subroutine read_initial_parameters

  ! --out is made if missing; outputs of an earlier run there are kept unless --overwrite.
  subroutine prepare_out_dir()
    logical :: exists
    integer(c_int) :: status
    status = c_mkdir(c_text(out_dir), int(o'777', c_int))  ! -1 if it exists: checked next
    inquire(file=out_dir // "/.", exist=exists)
    if (.not. exists) call fail("--out " // out_dir // ": cannot be made (mkdir returned " // &
        int_text(int(status, c_int64_t)) // ")", 2)
    inquire(file=out_dir // "/params.bin", exist=exists)
    if (exists .and. .not. overwrite) call fail(out_dir // " already holds params.bin: pass " // &
        "--overwrite to replace that run, or another --out", 2)
  end subroutine prepare_out_dir

  function c_text(text) result(chars)
    character(len=*), intent(in) :: text
    character(kind=c_char) :: chars(len(text) + 1)
    integer :: i
    do i = 1, len(text)
      chars(i) = text(i:i)
    end do
    chars(len(text) + 1) = c_null_char
  end function c_text

  ! ---- the GPU ----

  subroutine require_gpu()
    integer(c_int) :: devices, status
    status = cudaGetDeviceCount(devices)
    if (status /= cudaSuccess) call fail("no NVIDIA GPU or driver found (cudaGetDeviceCount: " // &
        fortran_string(cudaGetErrorName(status)) // ": " // &
        fortran_string(cudaGetErrorString(status)) // ")", 2)
    if (devices < 1) call fail("no NVIDIA GPU found (cudaGetDeviceCount: 0 devices)", 2)
    call check_cuda(cudaSetDevice(0), "cudaSetDevice")
  end subroutine require_gpu

  ! Which libraries the loader chose (the GPU machine has system copies beside the wheels'), and
  ! their versions: /proc/self/maps names every mapped file.
  subroutine report_libraries()
    integer(c_int) :: runtime, driver, major, minor, patch
    character(len=4096) :: line
    character(len=:), allocatable :: seen
    integer :: unit, iostat, start
    call check_cuda(cudaRuntimeGetVersion(runtime), "cudaRuntimeGetVersion")
    call check_cuda(cudaDriverGetVersion(driver), "cudaDriverGetVersion")
    call check_cublas(cublasGetProperty(MAJOR_VERSION, major), "cublasGetProperty")
    call check_cublas(cublasGetProperty(MINOR_VERSION, minor), "cublasGetProperty")
    call check_cublas(cublasGetProperty(PATCH_LEVEL, patch), "cublasGetProperty")
    print '(A)', "versions: cuDNN " // int_text(int(cudnnGetVersion(), c_int64_t)) // ", cuBLAS " // &
        int_text(int(major, c_int64_t)) // "." // int_text(int(minor, c_int64_t)) // "." // &
        int_text(int(patch, c_int64_t)) // ", CUDA runtime " // int_text(int(runtime, c_int64_t)) // &
        ", driver " // int_text(int(driver, c_int64_t))
    seen = " "
    open(newunit=unit, file="/proc/self/maps", action="read", status="old", iostat=iostat)
    do while (iostat == 0)
      read(unit, '(A)', iostat=iostat) line
      if (iostat /= 0) exit
      start = index(line, "/", back=.false.)
      if (start == 0) cycle
      if (index(line, "/libcudnn.so.") == 0 .and. index(line, "/libcublas.so.") == 0 .and. &
          index(line, "/libcudart.so.") == 0) cycle
      if (index(seen, " " // trim(line(start:)) // " ") > 0) cycle
      seen = seen // trim(line(start:)) // " "
      print '(A)', "library: " // trim(line(start:))
    end do
    if (iostat > 0) print '(A)', "library: (/proc/self/maps could not be read)"
    close(unit)
  end subroutine report_libraries

  ! ---- training ----

  subroutine train()
    integer(int64) :: step, now
    real(c_float) :: lr

    lr = real(lr_arg, c_float)  ! as Python: the float32 nearest the double
    open(newunit=losses_unit, file=out_dir // "/losses.tsv", action="write", status="replace")
    open(newunit=metrics_unit, file=out_dir // "/metrics.jsonl", action="write", status="replace")
    print '(A, I0, A, I0, A, G0, A)', "training ", total_steps, " steps: batch ", batch, ", lr ", &
        lr_arg, ", math " // merge("fp32", "tf32", options%strict_fp32) // &
        merge(", fused forward", "               ", options%fused)
    call system_clock(started, clock_rate)
    ! batch b = step - 1; the next one is read while the GPU runs this step
    if (total_steps > 0) call reader_load(0_int64)
    do step = 1, total_steps
      call reader_batch(step - 1, stream, m%x, m%target)
      call train_step(m, lr, pending)
      call reader_release(step - 1, stream)
      pending = pending + 1
      if (step < total_steps) call reader_load(step)
      if (mod(step, int(log_every, int64)) == 0 .or. step == total_steps .or. pending == LOSS_SLOTS) &
          call flush_losses(step)
    end do
    close(losses_unit)
    close(metrics_unit)
    call system_clock(now)
    print '(A, I0, A, F0.3, A, F0.1, A, F0.3, A)', "done: ", total_steps, " steps in ", &
        real(now - started, c_double) / clock_rate, " s (", &
        total_steps / max(real(now - started, c_double) / clock_rate, 1d-9), &
        " batches/s); reading took ", reader_read_seconds(), " s of it"
  end subroutine train

  ! Read the pending sums (waits for the stream), write their losses, and at a log step a line.
  subroutine flush_losses(step)
    integer(int64), intent(in) :: step
    integer :: i, epoch
    integer(int64) :: first, now
    real(c_double) :: loss, seconds
    character(len=32) :: text
    call check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    call check_cuda(cudaMemcpy(c_loc(sums), m%loss_sums, 4_c_size_t * pending, &
        cudaMemcpyDeviceToHost), "cudaMemcpy (loss sums)")
    first = step - pending + 1
    do i = 1, pending
      loss = real(sums(i), c_double) / (real(batch, c_double) * height * width)
      if (.not. (abs(loss) <= huge(loss))) then
        write(text, '(ES16.8E3)') loss
        call fail("step " // int_text(first + i - 1) // ": the loss is " // trim(adjustl(text)) // &
            "; training stopped", 3)
      end if
      loss_sum = loss_sum + loss
      last_loss = loss
      write(text, '(ES16.8E3)') loss
      write(losses_unit, '(A)') int_text(first + i - 1) // achar(9) // trim(adjustl(text))
    end do
    pending = 0
    flush(losses_unit)
    if (mod(step, int(log_every, int64)) /= 0 .and. step /= total_steps) return
    call system_clock(now)
    seconds = real(now - started, c_double) / clock_rate
    epoch = int((step - 1) / batches_per_epoch)
    write(metrics_unit, '(A)') '{"step": ' // int_text(step) // ', "epoch": ' // &
        int_text(int(epoch, c_int64_t)) // ', "loss": ' // trim(real_text(last_loss)) // &
        ', "average": ' // trim(real_text(loss_sum / step)) // ', "batches_per_s": ' // &
        trim(real_text(step / max(seconds, 1d-9))) // ', "elapsed": ' // &
        trim(real_text(seconds)) // '}'
    flush(metrics_unit)
    print '(A, I6, A, I0, A, F7.4, A, F7.4, A, F7.1, A)', "batch ", step, "  epoch ", epoch, &
        "  loss ", last_loss, "  average ", loss_sum / step, "  ", step / max(seconds, 1d-9), &
        " batches/s"
    flush(output_unit)
  end subroutine flush_losses

  ! A double as JSON-readable text with 17 significant digits.
  function real_text(value) result(text)
    real(c_double), intent(in) :: value
    character(len=32) :: text
    write(text, '(ES24.16E3)') value
    text = adjustl(text)
  end function real_text

  ! ---- outputs ----

  ! params.bin, written beside and renamed over (atomic), then its checksum lines.
  subroutine save_parameters()
    character(len=:), allocatable :: errmsg, path
    integer :: ierr, i
    call check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    call check_cuda(cudaMemcpy(c_loc(params), m%params, 4_c_size_t * NUM_PARAMS, &
        cudaMemcpyDeviceToHost), "cudaMemcpy (params to the host)")
    path = out_dir // "/params.bin"
    call write_params(path // ".partial", params, ierr, errmsg)
    if (ierr /= 0) call fail(errmsg, 1)
    if (c_rename(c_text(path // ".partial"), c_text(path)) /= 0) &
        call fail(path // ": cannot be renamed into place", 1)
    print '(A)', "parameters: " // path
    do i = 1, NUM_TENSORS
      print '(A)', format_checksum(trim(PARAM_NAMES(i)), &
          params(PARAM_OFFSETS(i) + 1 : PARAM_OFFSETS(i) + PARAM_SIZES(i)))
    end do
  end subroutine save_parameters

  subroutine release()
    call reader_close()
    call model_destroy(m)
    call check_cuda(cudaStreamDestroy(stream), "cudaStreamDestroy")
  end subroutine release

end program denoise_train
