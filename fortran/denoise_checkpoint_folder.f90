! Checkpoint folders, as Python's cudnn_denoise/checkpoint.py writes and reads them (that module is
! the format's source; docs/formats.md, "Checkpoint"): DIR/params.bin (NUM_PARAMS little-endian
! float32) and DIR/manifest.json (format, version, dtype, byte_order, tensors, params_bytes, the
! SHA-256 of params.bin, step, and the caller's "extra" object), so that either program resumes
! the other's run.
!
! Saving replaces DIR atomically as Python does: write DIR.tmp-<id> (each file and the folder
! fsync'ed), rename DIR to DIR.old-<id>, rename DIR.tmp-<id> to DIR, remove DIR.old-<id>. A crash
! leaves DIR or DIR.old-<id> complete; Python's load falls back to the latter, this module only
! names it (listing a folder's entries from Fortran needs readdir's platform-specific struct).
! Loading checks format, version, dtype, byte order, params_bytes and the SHA-256.
module denoise_checkpoint_folder
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: int8, int64
  use cudnn_denoise_checkpoint, only: NUM_PARAMS, NUM_TENSORS, PARAM_NAMES, PARAM_OFFSETS, &
      PARAMS_BIN_BYTES, CONV1_WEIGHT_SHAPE, CONV2_WEIGHT_SHAPE, CONV3_WEIGHT_SHAPE, read_params
  use cudnn_denoise_sha256, only: sha256_hex
  use denoise_check, only: fail, int_text, c_text, c_open, c_close
  use denoise_json, only: file_text, json_has, json_integer, json_string
  implicit none
  private
  public :: RUN_SUBFOLDER, checkpoint_t, save_checkpoint, load_checkpoint, remove_folder, &
      rename_file

  character(len=*), parameter :: RUN_SUBFOLDER = "checkpoint"  ! train --out DIR keeps DIR/checkpoint
  character(len=*), parameter :: FORMAT = "cudnn_denoise.checkpoint"
  integer, parameter :: VERSION = 1

  type :: checkpoint_t
    real(c_float) :: params(NUM_PARAMS) = 0
    integer(int64) :: step = 0
    character(len=:), allocatable :: path      ! the folder read (or the params.bin)
    character(len=:), allocatable :: manifest  ! manifest.json's text ("" for a bare params.bin)
  end type checkpoint_t

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
    integer(c_int) function c_unlink(path) bind(C, name="unlink")
      import :: c_int, c_char
      implicit none
      character(kind=c_char), intent(in) :: path(*)
    end function c_unlink
    integer(c_int) function c_rmdir(path) bind(C, name="rmdir")
      import :: c_int, c_char
      implicit none
      character(kind=c_char), intent(in) :: path(*)
    end function c_rmdir
    integer(c_int) function c_fsync(fd) bind(C, name="fsync")
      import :: c_int
      implicit none
      integer(c_int), value :: fd
    end function c_fsync
    integer(c_int) function c_getpid() bind(C, name="getpid")
      import :: c_int
      implicit none
    end function c_getpid
  end interface

contains

  ! Write params and step into the checkpoint folder `folder`, replacing it atomically; `extra` is
  ! the text of a JSON object (the run's position and settings). A failure ends the program (1).
  subroutine save_checkpoint(folder, params, step, extra)
    character(len=*), intent(in) :: folder, extra
    real(c_float), intent(in) :: params(NUM_PARAMS)
    integer(int64), intent(in) :: step
    integer(int8) :: bytes(PARAMS_BIN_BYTES)
    character(len=:), allocatable :: tmp, old, id
    logical :: exists
    integer, save :: saves = 0

    bytes = transfer(params, bytes)                ! the file's bytes: this machine is little-endian
    saves = saves + 1
    id = hex(int(c_getpid(), int64) * 65536 + saves)
    tmp = folder // ".tmp-" // id
    old = folder // ".old-" // id
    if (c_mkdir(c_text(tmp), int(o'777', c_int)) /= 0) call fail(tmp // ": cannot be made " // &
        "(writing the checkpoint)", 1)
    call write_file(tmp // "/params.bin", bytes)
    call write_file(tmp // "/manifest.json", manifest_bytes(sha256_hex(bytes), step, extra))
    call sync(tmp)
    inquire(file=folder // "/.", exist=exists)
    if (exists) call rename_file(folder, old)
    call rename_file(tmp, folder)
    call sync(parent(folder))
    if (exists) call remove_folder(old)
    call sync(parent(folder))
  end subroutine save_checkpoint

  function manifest_bytes(sha256, step, extra) result(bytes)
    character(len=*), intent(in) :: sha256, extra
    integer(int64), intent(in) :: step
    integer(int8), allocatable :: bytes(:)
    character(len=:), allocatable :: text
    integer :: i
    text = '{' // new_line('a') // ' "format": "' // FORMAT // '",' // new_line('a') // &
        ' "version": ' // int_text(int(VERSION, c_int64_t)) // ',' // new_line('a') // &
        ' "dtype": "float32",' // new_line('a') // ' "byte_order": "little",' // new_line('a') // &
        ' "tensors": ['
    do i = 1, NUM_TENSORS
      text = text // merge(' ', ',', i == 1) // new_line('a') // '  {"name": "' // &
          trim(PARAM_NAMES(i)) // '", "shape": ' // shape_text(i) // ', "offset_bytes": ' // &
          int_text(4_c_int64_t * PARAM_OFFSETS(i)) // '}'
    end do
    text = text // new_line('a') // ' ],' // new_line('a') // ' "params_bytes": ' // &
        int_text(PARAMS_BIN_BYTES) // ',' // new_line('a') // ' "sha256": "' // sha256 // '",' // &
        new_line('a') // ' "step": ' // int_text(step) // ',' // new_line('a') // &
        ' "extra": ' // extra // new_line('a') // '}' // new_line('a')
    bytes = transfer(text, bytes)
  end function manifest_bytes

  ! Tensor i's PyTorch shape as a JSON array: the weights' (K, C, R, S), the biases' (K)
  function shape_text(i) result(text)
    integer, intent(in) :: i
    character(len=:), allocatable :: text
    integer, parameter :: CHANNELS(3) = [CONV1_WEIGHT_SHAPE(1), CONV2_WEIGHT_SHAPE(1), &
        CONV3_WEIGHT_SHAPE(1)]
    integer :: shape(4), rank, d
    rank = 1
    select case (i)
    case (1)
      shape = CONV1_WEIGHT_SHAPE
      rank = 4
    case (3)
      shape = CONV2_WEIGHT_SHAPE
      rank = 4
    case (5)
      shape = CONV3_WEIGHT_SHAPE
      rank = 4
    case default                                  ! a bias: K, the channels of the weight before it
      shape(1) = CHANNELS(i / 2)
    end select
    text = "[" // int_text(int(shape(1), c_int64_t))
    do d = 2, rank
      text = text // ", " // int_text(int(shape(d), c_int64_t))
    end do
    text = text // "]"
  end function shape_text

  ! Read a checkpoint: a folder with manifest.json (checked, with its SHA-256), a train run's
  ! folder (its checkpoint/), or, where no manifest is needed (`bare`), a folder with only a
  ! params.bin or a params.bin itself. `what` names the argument in messages (status 2).
  subroutine load_checkpoint(path, what, bare, saved)
    character(len=*), intent(in) :: path, what
    logical, intent(in) :: bare
    type(checkpoint_t), intent(out) :: saved
    character(len=:), allocatable :: errmsg
    logical :: folder, manifest, run_folder
    integer :: ierr
    inquire(file=path // "/.", exist=folder)
    inquire(file=path // "/manifest.json", exist=manifest)
    inquire(file=path // "/" // RUN_SUBFOLDER // "/manifest.json", exist=run_folder)
    saved%manifest = ""
    if (manifest) then
      saved%path = path
    else if (folder .and. run_folder) then
      saved%path = path // "/" // RUN_SUBFOLDER
    else if (bare) then
      saved%path = merge(path // "/params.bin", path, folder)
      call read_params(saved%path, saved%params, ierr, errmsg)
      if (ierr /= 0) call fail(what // ": " // errmsg, 2)
      return
    else
      call fail(what // ": " // path // ": no checkpoint (no manifest.json in it or in its " // &
          RUN_SUBFOLDER // "/; after a crashed save, Python's checkpoint.load reads the " // &
          "complete " // path // ".old-<id> beside it)", 2)
    end if
    call read_folder(saved, what)
  end subroutine load_checkpoint

  subroutine read_folder(saved, what)
    type(checkpoint_t), intent(inout) :: saved
    character(len=*), intent(in) :: what
    character(len=:), allocatable :: path, file
    integer(int8), allocatable :: bytes(:)
    integer(int64) :: size_bytes
    integer :: unit, iostat
    path = saved%path // "/manifest.json"
    saved%manifest = file_text(path)
    call expect(json_string(saved%manifest, "format", path), FORMAT, "format", path)
    call expect(int_text(json_integer(saved%manifest, "version", path)), &
        int_text(int(VERSION, c_int64_t)), "version", path)
    call expect(json_string(saved%manifest, "dtype", path), "float32", "dtype", path)
    call expect(json_string(saved%manifest, "byte_order", path), "little", "byte_order", path)
    call expect(int_text(json_integer(saved%manifest, "params_bytes", path)), &
        int_text(PARAMS_BIN_BYTES), "params_bytes", path)
    saved%step = json_integer(saved%manifest, "step", path)
    if (saved%step < 0) call fail(what // ": " // path // ": step is negative", 2)
    file = saved%path // "/params.bin"
    inquire(file=file, size=size_bytes)
    if (size_bytes /= PARAMS_BIN_BYTES) call fail(what // ": " // file // ": " // &
        int_text(size_bytes) // " bytes, manifest expects " // int_text(PARAMS_BIN_BYTES), 2)
    allocate(bytes(PARAMS_BIN_BYTES))
    open(newunit=unit, file=file, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat)
    if (iostat == 0) read(unit, iostat=iostat) bytes
    if (iostat /= 0) call fail(what // ": " // file // ": cannot be read", 2)
    close(unit)
    if (sha256_hex(bytes) /= json_string(saved%manifest, "sha256", path)) call fail(what // ": " // &
        file // ": sha256 " // sha256_hex(bytes) // ", manifest says " // &
        json_string(saved%manifest, "sha256", path), 2)
    saved%params = transfer(bytes, saved%params)
  end subroutine read_folder

  subroutine expect(got, want, key, path)
    character(len=*), intent(in) :: got, want, key, path
    if (got /= want) call fail(path // ": " // key // " is " // got // ", expected " // want, 2)
  end subroutine expect

  subroutine write_file(path, bytes)
    character(len=*), intent(in) :: path
    integer(int8), intent(in) :: bytes(:)
    integer :: unit, iostat
    open(newunit=unit, file=path, access="stream", form="unformatted", action="write", &
        status="replace", iostat=iostat)
    if (iostat == 0) write(unit, iostat=iostat) bytes
    if (iostat == 0) close(unit, iostat=iostat)
    if (iostat /= 0) call fail(path // ": cannot be written (the previous checkpoint stays)", 1)
    call sync(path)
  end subroutine write_file

  ! fsync a file or folder: its data (a folder: its entries) on the disk before the next rename
  subroutine sync(path)
    character(len=*), intent(in) :: path
    integer(c_int) :: fd
    fd = c_open(c_text(path), 0_c_int)
    if (fd < 0) call fail(path // ": cannot be opened to fsync it", 1)
    if (c_fsync(fd) /= 0) call fail(path // ": fsync failed", 1)
    fd = c_close(fd)
  end subroutine sync

  subroutine rename_file(old, new)
    character(len=*), intent(in) :: old, new
    if (c_rename(c_text(old), c_text(new)) /= 0) call fail(old // ": cannot be renamed to " // new, 1)
  end subroutine rename_file

  ! a checkpoint folder: its two files, then the folder
  subroutine remove_folder(path)
    character(len=*), intent(in) :: path
    integer(c_int) :: status
    status = c_unlink(c_text(path // "/params.bin"))
    status = c_unlink(c_text(path // "/manifest.json"))
    if (c_rmdir(c_text(path)) /= 0) call fail(path // ": cannot be removed (files other than " // &
        "params.bin and manifest.json in it?)", 1)
  end subroutine remove_folder

  function parent(path) result(folder)
    character(len=*), intent(in) :: path
    character(len=:), allocatable :: folder
    integer :: slash
    slash = index(path, "/", back=.true.)
    folder = "."
    if (slash > 1) folder = path(1:slash - 1)
    if (slash == 1) folder = "/"
  end function parent

  function hex(value) result(text)
    integer(int64), intent(in) :: value
    character(len=:), allocatable :: text
    character(len=16) :: buffer
    write(buffer, '(Z0)') value
    text = trim(buffer)
  end function hex

end module denoise_checkpoint_folder
