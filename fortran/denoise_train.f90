! denoise_train: the Fortran port of `python -m cudnn_denoise.train` (legacy cuDNN step, or with
! --graph-api the NHWC graph-API step, FP32 or --precision bf16; either step with --graph captured
! into a CUDA graph; no shuffle).
!
!   denoise_train --data DIR (--init CKPT | --resume) --out DIR [--max-steps N] [--epochs E]
!                 [--batch-size B] [--lr LR] [--math tf32|fp32] [--fused] [--graph] [--graph-api]
!                 [--precision fp32|bf16] [--deterministic]
!                 [--drop-last] [--algorithms FILE] [--engines FILE] [--log-every N] [--checkpoint-every N]
!                 [--val-data DIR] [--cache auto|keep|drop] [--overwrite]
!
! It reads the dataset (DIR/dataset.json, noisy.bin, clean.bin: stream access) in the order that
! `train --no-shuffle` uses, the initial parameters from a checkpoint (a checkpoint folder, a train
! run's folder, a folder with a params.bin, or a params.bin), and runs the steps of module
! denoise_step on the first GPU; batches stream to the GPU ahead of the steps (module
! denoise_reader). It writes, into the --out folder, what train writes there:
!   losses.tsv      every step's loss, "step<TAB>loss" (train's format)
!   metrics.jsonl   one JSON object per log line (step, epoch, loss, average, batches_per_s, elapsed,
!                   and with --val-data val_loss, val_psnr, val_data_range, val_baseline_psnr)
!   algorithms.txt  the algorithm table it used (the format --algorithms reads)
!   checkpoint/     params.bin and manifest.json (module denoise_checkpoint_folder), every
!                   --checkpoint-every steps and at the end, with the run's position and settings
!                   in the manifest's extra as train keeps them: `train --resume` continues it,
!                   and --resume continues a `train --no-shuffle` run
! and prints, last, the checksum lines that read_checkpoint prints for the final parameters.
! SIGINT or SIGTERM finish the step under way, write the checkpoint and exit 130 or 143.
! docs/fortran.md, "Running the Fortran program", gives the commands and the comparison with Python.
! Exit status: 0 done; 1 a CUDA, cuDNN or cuBLAS call failed (the line names it); 2 bad arguments,
! data, checkpoint, or no GPU; 3 a loss was not finite; 128 + signal when stopped by one.
program denoise_train
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int64, output_unit
  use cudnn_interfaces
  use cudnn_denoise_checkpoint, only: NUM_PARAMS, NUM_TENSORS, PARAM_NAMES, PARAM_OFFSETS, &
      PARAM_SIZES, read_params, write_params
  use cudnn_denoise_checksum, only: format_checksum
  use denoise_check, only: check_cuda, check_cublas, fail, int_text, c_text
  use denoise_step, only: model_t, LOSS_SLOTS, train_step
  use denoise_setup, only: model_options_t, model_create, model_destroy
  use denoise_algorithms, only: algorithm_table_t, write_table
  use denoise_reader, only: SLOTS, reader_open, reader_start, reader_queue, reader_batch, &
      reader_release, reader_close, reader_wait_seconds
  use denoise_cache, only: choose_cache
  use denoise_dataset_meta, only: dataset_meta_t, read_dataset_meta
  use denoise_checkpoint_folder, only: RUN_SUBFOLDER, checkpoint_t, save_checkpoint, &
      load_checkpoint, remove_folder
  use denoise_run_position, only: position_t, position_from, run_extra, cut_logs
  use denoise_validation, only: validation_t, validation_open, validate, validation_close
  use denoise_val_text, only: fixed, general, versus_baseline
  use denoise_signals, only: catch_signals, signal_received
  use denoise_graph, only: graph_t, graph_open, graph_step, graph_close
  use denoise_graph_api, only: from_krsc
  implicit none

  interface
    integer(c_int) function c_mkdir(path, mode) bind(C, name="mkdir")
      import :: c_int, c_char
      implicit none
      character(kind=c_char), intent(in) :: path(*)
      integer(c_int), value :: mode
    end function c_mkdir
  end interface

  ! what the command line asks for (train's flags and defaults)
  character(len=:), allocatable :: data_dir, init_path, out_dir, val_dir, cache
  integer :: batch = 4, epochs = 1, log_every = 100
  integer(int64) :: max_steps = -1, checkpoint_every = 1000
  real(c_double) :: lr_arg = 0.001_c_double
  logical :: drop_last = .false., overwrite = .false., resume = .false., graph = .false.
  type(model_options_t) :: options

  ! the data (dataset.json) and the run
  type(dataset_meta_t) :: data
  integer :: batches_per_epoch
  integer(int64) :: total_steps
  real(c_float), target :: params(NUM_PARAMS)
  type(position_t) :: position                    ! where the run stands (resumed or 0)
  type(model_t) :: m
  type(algorithm_table_t) :: table
  type(validation_t) :: val
  type(graph_t) :: captured                       ! --graph
  type(c_ptr) :: stream

  ! the loop's bookkeeping: losses still on the device, the clock, the logs
  integer :: pending = 0, losses_unit, metrics_unit
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
  call model_create(m, int(batch, c_int), int(data%height, c_int), int(data%width, c_int), options, &
      stream, params, table)
  call write_table(out_dir // "/algorithms.txt", table)
  if (len(val_dir) > 0) call validation_open(val, val_dir, batch, data%height, data%width, options, &
      stream, params)
  if (graph) call graph_open(captured, m)
  call open_reader()
  call train()
  call finish()

contains

  ! ---- the command line ----

  subroutine parse_arguments()
    integer :: i, n
    character(len=:), allocatable :: flag, math, precision
    math = "tf32"
    precision = "fp32"
    data_dir = ""
    init_path = ""
    out_dir = ""
    val_dir = ""
    cache = "auto"
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
      case ("--resume")
        resume = .true.
      case ("--graph")
        graph = .true.
      case ("--graph-api")
        options%graph_api = .true.
      case ("--data", "--init", "--out", "--algorithms", "--engines", "--math", "--max-steps", "--epochs", &
          "--batch-size", "--lr", "--log-every", "--checkpoint-every", "--val-data", "--cache", "--precision")
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
        case ("--engines")
          options%engines = argument(i)
        case ("--math")
          math = argument(i)
        case ("--precision")
          precision = argument(i)
        case ("--max-steps")
          max_steps = int_argument(i, flag, 0)
        case ("--epochs")
          epochs = int(int_argument(i, flag, 1))
        case ("--batch-size")
          batch = int(int_argument(i, flag, 1))
        case ("--log-every")
          log_every = int(int_argument(i, flag, 1))
        case ("--checkpoint-every")
          checkpoint_every = int_argument(i, flag, 0)
        case ("--val-data")
          val_dir = argument(i)
        case ("--cache")
          cache = argument(i)
        case ("--lr")
          lr_arg = real_argument(i, flag)
        end select
      case default
        call fail("unknown argument '" // flag // "' (--help lists them)", 2)
      end select
      i = i + 1
    end do
    if (len(data_dir) == 0 .or. len(out_dir) == 0 .or. (len(init_path) == 0 .neqv. resume)) &
        call fail("--data, --out and one of --init or --resume are required (--help)", 2)
    if (resume .and. overwrite) call fail("--resume continues the run in --out, --overwrite " // &
        "replaces it: pass one of them", 2)
    if (math /= "tf32" .and. math /= "fp32") call fail("--math must be tf32 or fp32, not " // math, 2)
    options%strict_fp32 = math == "fp32"
    ! network/options.py's rules, in train's words
    if (precision /= "fp32" .and. precision /= "bf16") call fail("--precision must be fp32 or bf16, not " // &
        precision, 2)
    options%bf16 = precision == "bf16"
    if (options%bf16 .and. .not. options%graph_api) call fail("--precision bf16 runs on the graph-API " // &
        "path only: it needs --graph-api", 2)
    if (options%bf16 .and. options%strict_fp32) call fail("--precision bf16 rounds activations to BF16 " // &
        "on tensor cores: it cannot be strict FP32 (--math fp32)", 2)
    if (options%graph_api .and. options%fused) call fail("--graph-api and --fused are different " // &
        "steps: pass one of them", 2)
    if (allocated(options%engines) .and. .not. options%graph_api) call fail("--engines is the " // &
        "graph API step's engine table: it needs --graph-api", 2)
    if (cache /= "auto" .and. cache /= "keep" .and. cache /= "drop") call fail("--cache must be " // &
        "one of auto, keep, drop, not '" // cache // "'", 2)
  end subroutine parse_arguments

  subroutine usage()
    print '(A)', "usage: denoise_train --data DIR (--init CKPT | --resume) --out DIR [--max-steps N]"
    print '(A)', "                     [--epochs E] [--batch-size B] [--lr LR] [--math tf32|fp32]"
    print '(A)', "                     [--fused] [--graph] [--graph-api] [--precision fp32|bf16]"
    print '(A)', "                     [--deterministic] [--drop-last]"
    print '(A)', "                     [--algorithms FILE] [--engines FILE]"
    print '(A)', "                     [--log-every N] [--checkpoint-every N] [--val-data DIR]"
    print '(A)', "                     [--cache auto|keep|drop] [--overwrite]"
    print '(A)', "Trains the seed's CNN with the cuDNN calls of python -m cudnn_denoise.train"
    print '(A)', "--backend cudnn --no-shuffle (legacy step) and writes losses.tsv, metrics.jsonl,"
    print '(A)', "algorithms.txt and checkpoint/ into --out, as train does. Defaults as train: batch 4,"
    print '(A)', "lr 0.001, 1 epoch, tf32, a log line every 100 steps, a checkpoint every 1000 (0: at"
    print '(A)', "the end only). --init: a checkpoint, a train run's folder or a params.bin. --resume"
    print '(A)', "continues the run in --out (its own or train --no-shuffle's) from its checkpoint."
    print '(A)', "--val-data: a held-out set, every pair scored at each log line (val loss; PSNR against"
    print '(A)', "the noisy input's). --algorithms"
    print '(A)', "takes the algorithm table a Python run wrote (its --out/algorithms.txt); without it"
    print '(A)', "cuDNN's heuristics choose (deterministic ones with --deterministic). --drop-last:"
    print '(A)', "skip a partial last batch (as train --drop-last); without it the count must divide"
    print '(A)', "by the batch. --graph: the step captured once into a CUDA graph and replayed."
    print '(A)', "--graph-api: train --graph-api's NHWC step (fused operation graphs of cuDNN's backend"
    print '(A)', "API; not with --fused); with --graph, captured and replayed as the legacy step."
    print '(A)', "--precision bf16 (--graph-api, tf32): BF16 activations, FP32 parameters, as train's."
    print '(A)', "--engines: the engine table train --graph-api wrote (its --out/engines.txt), the same"
    print '(A)', "engines; without it cuDNN's heuristics choose. --cache: the page cache of the reads,"
    print '(A)', "as train's. float16 sets are"
    print '(A)', "widened on the GPU. SIGINT/SIGTERM: the step finishes, the checkpoint is written."
    print '(A)', "Exit: 0 done, 1 a CUDA/cuDNN/cuBLAS call failed, 2 bad input or no GPU, 3 a loss"
    print '(A)', "was not finite, 130/143 stopped by SIGINT/SIGTERM."
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

  ! dataset.json (module denoise_dataset_meta), and the batches it makes.
  subroutine open_dataset()
    character(len=:), allocatable :: path
    call read_dataset_meta(data_dir, data)
    path = data_dir // "/dataset.json"
    if (data%count < batch) call fail(path // ": " // int_text(int(data%count, c_int64_t)) // &
        " samples, fewer than one batch of " // int_text(int(batch, c_int64_t)), 2)
    if (mod(data%count, batch) /= 0 .and. .not. drop_last) call fail(path // ": " // &
        int_text(int(data%count, c_int64_t)) // " samples leave a partial last batch of " // &
        int_text(int(mod(data%count, batch), c_int64_t)) // ", which this program does not train " // &
        "on: pass --drop-last (and train --drop-last)", 2)
    batches_per_epoch = data%count / batch
    total_steps = int(epochs, int64) * batches_per_epoch
    if (max_steps >= 0) total_steps = min(total_steps, max_steps)
    print '(A)', "data: " // int_text(int(data%count, c_int64_t)) // " pairs of " // &
        int_text(int(data%height, c_int64_t)) // "x" // int_text(int(data%width, c_int64_t)) // &
        " (" // data_dir // ")"
  end subroutine open_dataset


  ! The reader, with train's --cache choice (printed as train prints it).
  subroutine open_reader()
    character(len=:), allocatable :: why
    logical :: keep
    call choose_cache(cache, 2_int64 * merge(2, 4, data%half) * data%height * data%width * &
        data%count, keep, why)
    print '(A)', "data: page cache: " // merge("keep", "drop", keep) // " (" // why // ")"
    call reader_open(data, batch, batches_per_epoch, keep)
  end subroutine open_reader

  ! --init (a checkpoint, a train run's folder, a folder with a params.bin, a params.bin), or with
  ! --resume the checkpoint of the run in --out, whose position and settings must fit this run.
  subroutine read_initial_parameters()
    type(checkpoint_t) :: saved
    if (resume) then
      call load_checkpoint(out_dir // "/" // RUN_SUBFOLDER, "--resume", .false., saved)
      position = position_from(saved, batch, batches_per_epoch, drop_last, data)
      print '(A, I0, A, I0, A, I0, A)', "resuming from " // saved%path // " at step ", &
          position%step, " (epoch ", position%epoch, ", batch ", position%batch, ")"
    else
      call load_checkpoint(init_path, "--init", .true., saved)
      print '(A)', "initial parameters from " // saved%path
    end if
    params = saved%params
  end subroutine read_initial_parameters

  ! --out is made if missing; a run there (its checkpoint) is continued with --resume, replaced
  ! with --overwrite, else kept and this run refused. Resumed logs are cut back to the checkpoint.
  subroutine prepare_out_dir()
    logical :: exists
    integer(c_int) :: status
    status = c_mkdir(c_text(out_dir), int(o'777', c_int))  ! -1 if it exists: checked next
    inquire(file=out_dir // "/.", exist=exists)
    if (.not. exists) call fail("--out " // out_dir // ": cannot be made (mkdir returned " // &
        int_text(int(status, c_int64_t)) // ")", 2)
    inquire(file=out_dir // "/" // RUN_SUBFOLDER // "/.", exist=exists)
    if (exists .and. overwrite) call remove_folder(out_dir // "/" // RUN_SUBFOLDER)
    if (exists .and. .not. (overwrite .or. resume)) call fail("--out " // out_dir // &
        ": holds a run (its " // RUN_SUBFOLDER // "/); continue it with --resume, replace it " // &
        "with --overwrite, or choose another --out", 2)
    if (resume) call cut_logs(out_dir, position%step)
  end subroutine prepare_out_dir

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
    open(newunit=losses_unit, file=out_dir // "/losses.tsv", action="write", &
        status=merge("unknown", "replace", resume), position="append")
    open(newunit=metrics_unit, file=out_dir // "/metrics.jsonl", action="write", &
        status=merge("unknown", "replace", resume), position="append")
    print '(A, I0, A, I0, A, G0, A)', "training ", total_steps - position%step, " steps: batch ", &
        batch, ", lr ", lr_arg, ", math " // merge("fp32", "tf32", options%strict_fp32) // &
        merge(", fused forward", "               ", options%fused) // &
        merge(", graph API", "           ", options%graph_api) // trim(merge(", bf16", "      ", options%bf16))
    call catch_signals()
    call system_clock(started, clock_rate)
    ! batch b = step - 1; SLOTS batches are read ahead, the next one copied while this step runs
    do step = position%step, min(position%step + SLOTS, total_steps) - 1
      call reader_start(step)
    end do
    do step = position%step + 1, total_steps
      call reader_batch(step - 1, stream, m%x, m%target)
      if (graph) then
        call graph_step(captured, m, lr, pending)
      else
        call train_step(m, lr, pending)
      end if
      call reader_release(step - 1, stream)
      pending = pending + 1
      position%step = step
      if (signal_received() /= 0) exit
      if (step < total_steps) call reader_queue(step)
      if (step - 1 + SLOTS < total_steps) call reader_start(step - 1 + SLOTS)
      if (mod(step, int(log_every, int64)) == 0 .or. step == total_steps) then
        call log_line()
      else if (pending == LOSS_SLOTS) then
        call flush_losses()
      end if
      if (checkpoint_every > 0) then
        if (mod(step, checkpoint_every) == 0) call save()
      end if
    end do
    call save()
    close(losses_unit)
    close(metrics_unit)
    call system_clock(now)
    print '(A, I0, A, F0.3, A, F0.1, A, F0.3, A)', "done: ", step_count(), " steps in ", &
        seconds_since(started), " s (", step_count() / max(seconds_since(started), 1d-9), &
        " batches/s); the host waited ", reader_wait_seconds(), " s of it for reads"
  end subroutine train

  integer(int64) function step_count()
    step_count = position%step - position%first_step
  end function step_count

  real(c_double) function seconds_since(tick)
    integer(int64), intent(in) :: tick
    integer(int64) :: now
    call system_clock(now)
    seconds_since = real(now - tick, c_double) / clock_rate
  end function seconds_since

  ! Read the pending sums (waits for the stream) and write their losses.
  subroutine flush_losses()
    integer :: i
    integer(int64) :: first
    real(c_double) :: loss
    character(len=32) :: text
    if (pending == 0) return
    call check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    call check_cuda(cudaMemcpy(c_loc(sums), m%loss_sums, 4_c_size_t * pending, &
        cudaMemcpyDeviceToHost), "cudaMemcpy (loss sums)")
    first = position%step - pending + 1
    do i = 1, pending
      loss = real(sums(i), c_double) / (real(batch, c_double) * data%height * data%width)
      write(text, '(ES16.8E3)') loss
      if (.not. (abs(loss) <= huge(loss))) call fail("step " // int_text(first + i - 1) // &
          ": the loss is " // trim(adjustl(text)) // "; training stopped (the last checkpoint " // &
          "stays in " // out_dir // "/" // RUN_SUBFOLDER // ")", 3)
      position%loss_sum = position%loss_sum + loss
      position%last_loss = loss
      write(losses_unit, '(A)') int_text(first + i - 1) // achar(9) // trim(adjustl(text))
    end do
    pending = 0
    flush(losses_unit)
  end subroutine flush_losses

  ! The losses so far, then train's log line: metrics.jsonl and stdout (with --val-data, the
  ! held-out set's loss and PSNR).
  subroutine log_line()
    real(c_double) :: seconds, rate, val_loss, val_psnr
    character(len=:), allocatable :: fields
    character(len=:), allocatable :: tail
    call flush_losses()
    seconds = seconds_since(started)
    rate = step_count() / max(seconds, 1d-9)
    fields = '{"step": ' // int_text(position%step) // ', "epoch": ' // &
        int_text(int(position%epoch_of(batches_per_epoch), c_int64_t)) // ', "loss": ' // &
        trim(real_text(position%last_loss)) // ', "average": ' // &
        trim(real_text(position%loss_sum / position%step)) // ', "batches_per_s": ' // &
        trim(real_text(rate)) // ', "elapsed": ' // trim(real_text(seconds))
    tail = ""
    if (len(val_dir) > 0) then
      call validate(val, m, stream, val_loss, val_psnr)
      fields = fields // ', "val_loss": ' // trim(real_text(val_loss)) // ', "val_psnr": ' // &
          trim(real_text(val_psnr)) // ', "val_data_range": ' // trim(real_text(val%peak)) // &
          ', "val_baseline_psnr": ' // trim(real_text(val%baseline))
      tail = "  val loss " // fixed(val_loss, 4) // "  PSNR " // versus_baseline(val_psnr, val%baseline)
    end if
    write(metrics_unit, '(A)') fields // '}'
    flush(metrics_unit)
    print '(A, I6, A, I0, A, F7.4, A, F7.4, A, F7.1, A)', "batch ", position%step, "  epoch ", &
        position%epoch_of(batches_per_epoch), "  loss ", position%last_loss, "  average ", &
        position%loss_sum / position%step, "  ", rate, " batches/s" // tail
    flush(output_unit)
  end subroutine log_line

  ! A double as JSON-readable text with 17 significant digits.
  function real_text(value) result(text)
    real(c_double), intent(in) :: value
    character(len=32) :: text
    write(text, '(ES24.16E3)') value
    text = adjustl(text)
  end function real_text

  ! ---- outputs ----

  ! The checkpoint (OUT/checkpoint, atomic), after the pending losses: a non-finite one ends the
  ! program first, so no checkpoint holds parameters that a NaN step updated.
  subroutine save()
    call flush_losses()
    call check_cuda(cudaMemcpy(c_loc(params), m%params, 4_c_size_t * NUM_PARAMS, &
        cudaMemcpyDeviceToHost), "cudaMemcpy (params to the host)")
    if (options%graph_api) params = from_krsc(params)  ! the device holds filters KRSC
    call save_checkpoint(out_dir // "/" // RUN_SUBFOLDER, params, position%step, &
        run_extra(position, batches_per_epoch, config_json(), data))
  end subroutine save

  ! The manifest's extra "config": train's Config fields for what this program ran
  function config_json() result(text)
    character(len=:), allocatable :: text, steps
    steps = "null"
    if (max_steps >= 0) steps = int_text(max_steps)
    text = '{"batch_size": ' // int_text(int(batch, c_int64_t)) // ', "ranks": 1, "lr": ' // &
        trim(real_text(lr_arg)) // ', "epochs": ' // int_text(int(epochs, c_int64_t)) // &
        ', "max_steps": ' // steps // ', "seed": 0, "shuffle": false, "drop_last": ' // &
        json_bool(drop_last) // ', "backend": "cudnn", "math": "' // &
        merge("fp32", "tf32", options%strict_fp32) // '", "deterministic": ' // &
        json_bool(options%deterministic) // ', "fused": ' // json_bool(options%fused) // &
        ', "graph": ' // json_bool(graph) // ', "graph_api": ' // json_bool(options%graph_api) // &
        ', "precision": "' // &
        merge("bf16", "fp32", options%bf16) // '", "log_every": ' // &
        int_text(int(log_every, c_int64_t)) // ', "checkpoint_every": ' // &
        int_text(checkpoint_every) // ', "profile": 0, "cache": "auto"}'
  end function config_json

  function json_bool(value) result(text)
    logical, intent(in) :: value
    character(len=:), allocatable :: text
    text = trim(merge("true ", "false", value))
  end function json_bool

  ! After the last step (or a signal): with --val-data the final validation, the final
  ! parameters' checksum lines (last), then the buffers freed; a signal ends the program with 128 + its number, as train.
  subroutine finish()
    integer :: i
    integer(c_int) :: signum
    real(c_double) :: val_loss, val_psnr
    if (graph) call graph_close(captured)
    if (len(val_dir) > 0) then
      call validate(val, m, stream, val_loss, val_psnr)
      print '(A)', "validation: loss " // fixed(val_loss, 4) // ", PSNR " // &
          versus_baseline(val_psnr, val%baseline) // " (data range " // general(val%peak) // ")"
      call validation_close(val)
    end if
    print '(A)', "parameters: " // out_dir // "/" // RUN_SUBFOLDER // "/params.bin"
    do i = 1, NUM_TENSORS
      print '(A)', format_checksum(trim(PARAM_NAMES(i)), &
          params(PARAM_OFFSETS(i) + 1 : PARAM_OFFSETS(i) + PARAM_SIZES(i)))
    end do
    flush(output_unit)
    call reader_close()
    call model_destroy(m)
    call check_cuda(cudaStreamDestroy(stream), "cudaStreamDestroy")
    signum = signal_received()
    if (signum /= 0) call fail("stopped by signal " // int_text(int(signum, c_int64_t)) // &
        " after step " // int_text(position%step) // "; checkpoint at " // out_dir // "/" // &
        RUN_SUBFOLDER // "; continue with --resume", 128 + signum)
  end subroutine finish

end program denoise_train
