! Where a run stands, as train keeps it in a checkpoint's manifest "extra"
! (cudnn_denoise/training/run_record.py: epoch, position, loss_sum, last_loss, config, data), so
! that train --resume continues a run of this program and this program one of train's; and the
! logs of a resumed run cut back to its checkpoint (training.loop.cut_logs).
!
! Batch b (0-based, of the whole run) is batch b mod batches_per_epoch of epoch b / batches_per_epoch
! (no shuffle). After step s > 0, train records epoch (s - 1) / B and position s - epoch * B
! (1 .. B: an epoch's end is its last batch done), where B is the batches per epoch.
module denoise_run_position
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  use, intrinsic :: iso_fortran_env, only: int64
  use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan, ieee_is_finite
  use denoise_check, only: fail, int_text
  use denoise_json, only: file_text, json_has, json_integer, json_number, json_logical, json_value
  use denoise_dataset_meta, only: dataset_meta_t
  use denoise_checkpoint_folder, only: checkpoint_t, rename_file
  implicit none
  private
  public :: position_t, position_from, run_extra, cut_logs

  type :: position_t
    integer(int64) :: step = 0                    ! steps done
    integer(int64) :: first_step = 0              ! where this program's run began (resumed: > 0)
    integer(int64) :: epoch = 0, batch = 0        ! as the checkpoint records them
    real(c_double) :: loss_sum = 0                ! of every step's loss, for the running average
    real(c_double) :: last_loss = 0
  contains
    procedure :: epoch_of
  end type position_t

contains

  ! The epoch of the last step done (train's log lines and metrics give this one).
  integer(int64) function epoch_of(self, batches_per_epoch)
    class(position_t), intent(in) :: self
    integer, intent(in) :: batches_per_epoch
    epoch_of = max(self%step - 1, 0_int64) / batches_per_epoch
  end function epoch_of

  ! The position of a training checkpoint, checked against this run: the batch, the shuffle (this
  ! program reads in order), drop_last and the data's count and shape must be the saved run's.
  function position_from(saved, batch, batches_per_epoch, drop_last, data) result(position)
    type(checkpoint_t), intent(in) :: saved
    integer, intent(in) :: batch, batches_per_epoch
    logical, intent(in) :: drop_last
    type(dataset_meta_t), intent(in) :: data
    type(position_t) :: position
    character(len=:), allocatable :: text, path, where
    integer(int64) :: ranks
    text = saved%manifest
    path = saved%path // "/manifest.json"
    where = "--resume: the checkpoint's run (" // saved%path // ")"
    if (.not. (json_has(text, "epoch") .and. json_has(text, "position") .and. &
        json_has(text, "loss_sum"))) call fail(path // ": not a training checkpoint (no epoch, " // &
        "position, loss_sum)", 2)
    position%step = saved%step
    position%first_step = saved%step
    position%epoch = json_integer(text, "epoch", path)
    position%batch = json_integer(text, "position", path)
    position%loss_sum = json_number(text, "loss_sum", path)
    position%last_loss = ieee_value(position%last_loss, ieee_quiet_nan)
    if (json_value(text, "last_loss", path) /= "null") position%last_loss = &
        json_number(text, "last_loss", path)
    if (json_has(text, "batch_size")) then
      ranks = 1
      if (json_has(text, "ranks")) ranks = json_integer(text, "ranks", path)
      if (json_integer(text, "batch_size", path) * ranks /= batch) call fail(where // " used " // &
          "batch_size=" // int_text(json_integer(text, "batch_size", path)) // " on " // &
          int_text(ranks) // " rank(s), this one " // int_text(int(batch, c_int64_t)) // &
          ": their global batches must be equal", 2)
    end if
    if (json_has(text, "shuffle")) then
      if (json_logical(text, "shuffle", path)) call fail(where // " shuffled its batches: this " // &
          "program reads them in order (train --no-shuffle); continue that run with train --resume", 2)
    end if
    if (json_has(text, "drop_last")) then
      if (json_logical(text, "drop_last", path) .neqv. drop_last) call fail(where // &
          " used drop_last=" // merge("True ", "False", json_logical(text, "drop_last", path)) // &
          ", this one the other", 2)
    end if
    call expect_data("count", data%count)
    call expect_data("height", data%height)
    call expect_data("width", data%width)
    if (position%epoch * batches_per_epoch + position%batch /= position%step) call fail(where // &
        " is at epoch " // int_text(position%epoch) // ", batch " // int_text(position%batch) // &
        " after step " // int_text(position%step) // ", which batches of " // &
        int_text(int(batch, c_int64_t)) // " of " // data%noisy // " do not give", 2)
  contains
    subroutine expect_data(key, value)
      character(len=*), intent(in) :: key
      integer, intent(in) :: value
      if (.not. json_has(text, key)) return
      if (json_integer(text, key, path) /= value) call fail(where // " read " // key // " " // &
          int_text(json_integer(text, key, path)) // ", " // data%folder // " holds " // &
          int_text(int(value, c_int64_t)), 2)
    end subroutine expect_data
  end function position_from

  ! The manifest's extra for a run after position%step steps; config: the settings' JSON object.
  function run_extra(position, batches_per_epoch, config, data) result(text)
    type(position_t), intent(in) :: position
    integer, intent(in) :: batches_per_epoch
    character(len=*), intent(in) :: config
    type(dataset_meta_t), intent(in) :: data
    character(len=:), allocatable :: text, last
    integer(int64) :: epoch
    epoch = position%epoch_of(batches_per_epoch)
    last = "null"                                 ! JSON has no NaN: train writes null too
    if (ieee_is_finite(position%last_loss) .and. position%step > 0) last = number(position%last_loss)
    text = '{"epoch": ' // int_text(epoch) // ', "position": ' // &
        int_text(position%step - epoch * batches_per_epoch) // ', "loss_sum": ' // &
        number(position%loss_sum) // ', "last_loss": ' // last // ', "config": ' // config // &
        ', "data": {"noisy": "' // data%noisy // '", "clean": "' // data%clean // &
        '", "height": ' // int_text(int(data%height, c_int64_t)) // ', "width": ' // &
        int_text(int(data%width, c_int64_t)) // ', "count": ' // int_text(int(data%count, c_int64_t)) // '}}'
  end function run_extra

  function number(value) result(text)
    real(c_double), intent(in) :: value
    character(len=:), allocatable :: text
    character(len=32) :: buffer
    write(buffer, '(ES24.16E3)') value
    text = trim(adjustl(buffer))
  end function number

  ! Drop the lines of OUT/losses.tsv and OUT/metrics.jsonl after `step` (a run stopped after its
  ! last checkpoint wrote them; the resumed run writes them again) and a half-written last line.
  subroutine cut_logs(out_dir, step)
    character(len=*), intent(in) :: out_dir
    integer(int64), intent(in) :: step
    call cut(out_dir // "/losses.tsv", .false.)
    call cut(out_dir // "/metrics.jsonl", .true.)
  contains
    subroutine cut(path, json)
      character(len=*), intent(in) :: path
      logical, intent(in) :: json
      character(len=:), allocatable :: text, kept, line
      integer :: start, finish, unit, iostat
      integer(int64) :: bytes, line_step
      inquire(file=path, size=bytes)
      if (bytes <= 0) return
      text = file_text(path)
      kept = ""
      start = 1
      do while (start <= len(text))
        finish = index(text(start:), achar(10))
        if (finish == 0) exit                     ! no newline: half written
        line = text(start:start + finish - 2)
        start = start + finish
        if (json) then
          iostat = 1
          if (index(line, '"step": ') > 0) read(line(index(line, '"step": ') + 8:), *, &
              iostat=iostat) line_step
        else
          read(line(1:max(1, index(line, achar(9)) - 1)), *, iostat=iostat) line_step
        end if
        if (iostat == 0 .and. line_step <= step) kept = kept // line // achar(10)
      end do
      if (len(kept) == len(text)) return
      open(newunit=unit, file=path // ".partial", access="stream", form="unformatted", &
          action="write", status="replace", iostat=iostat)
      if (iostat == 0) write(unit, iostat=iostat) kept
      if (iostat == 0) close(unit, iostat=iostat)
      if (iostat /= 0) call fail(path // ".partial: cannot be written", 1)
      call rename_file(path // ".partial", path)
    end subroutine cut
  end subroutine cut_logs

end module denoise_run_position
