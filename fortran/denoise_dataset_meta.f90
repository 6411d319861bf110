! A dataset folder's dataset.json (docs/formats.md, "Dataset"): the sample shape and count, the
! files' dtype, the two file paths, and the value range that the PSNR's peak comes from
! (value_range [low, high], else the format's [0, 1], as Python's data.format.value_range).
! The files' sizes are checked against the count and shape. Problems end the program naming the
! file (status 2).
module denoise_dataset_meta
  use, intrinsic :: iso_c_binding, only: c_double, c_int64_t
  use, intrinsic :: iso_fortran_env, only: int64
  use denoise_check, only: fail, int_text
  use denoise_json, only: file_text, json_has, json_value, json_integer, json_string
  implicit none
  private
  public :: dataset_meta_t, read_dataset_meta

  type :: dataset_meta_t
    character(len=:), allocatable :: folder, noisy, clean, range_from
    integer :: height = 0, width = 0, count = 0
    logical :: half = .false.                     ! dtype float16 (else float32)
    real(c_double) :: low = 0, high = 1           ! value_range
  end type dataset_meta_t

contains

  subroutine read_dataset_meta(folder, meta)
    character(len=*), intent(in) :: folder
    type(dataset_meta_t), intent(out) :: meta
    character(len=:), allocatable :: text, path, dtype
    integer(int64) :: need
    path = folder // "/dataset.json"
    text = file_text(path)
    meta%folder = folder
    meta%height = int(json_integer(text, "height", path))
    meta%width = int(json_integer(text, "width", path))
    meta%count = int(json_integer(text, "count", path))
    if (meta%height < 1 .or. meta%width < 1 .or. meta%count < 1) call fail(path // &
        ": height, width and count must be positive", 2)
    dtype = "float32"
    if (json_has(text, "dtype")) dtype = json_string(text, "dtype", path)
    if (dtype /= "float32" .and. dtype /= "float16") call fail(path // ": dtype " // dtype // &
        ": a dataset is float32 or float16", 2)
    meta%half = dtype == "float16"
    meta%range_from = "the format's, " // path // " does not say"
    if (json_has(text, "value_range")) call read_range(json_value(text, "value_range", path), path, meta)
    meta%noisy = folder // "/" // json_string(text, "noisy", path)
    meta%clean = folder // "/" // json_string(text, "clean", path)
    need = int(merge(2, 4, meta%half), int64) * meta%height * meta%width * meta%count
    call check_size(meta%noisy, need)
    call check_size(meta%clean, need)
  end subroutine read_dataset_meta

  subroutine read_range(field, path, meta)
    character(len=*), intent(in) :: field, path
    type(dataset_meta_t), intent(inout) :: meta
    integer :: iostat
    iostat = 1
    if (len(field) > 2 .and. field(1:1) == "[" .and. verify(field, "[]-+.,0123456789eE " // &
        achar(10) // achar(13)) == 0) read(field(2:len(field) - 1), *, iostat=iostat) meta%low, meta%high
    if (iostat /= 0 .or. .not. (meta%low < meta%high) .or. .not. (abs(meta%high) <= huge(1d0)) &
        .or. .not. (abs(meta%low) <= huge(1d0))) call fail(path // ": value_range must be two " // &
        "finite numbers [low, high] with low < high, not " // field, 2)
    meta%range_from = path
  end subroutine read_range

  subroutine check_size(path, need)
    character(len=*), intent(in) :: path
    integer(int64), intent(in) :: need
    integer(int64) :: bytes
    inquire(file=path, size=bytes)
    if (bytes < 0) call fail(path // ": missing or unreadable", 2)
    if (bytes < need) call fail(path // " has " // int_text(bytes) // " bytes, fewer than the " // &
        int_text(need) // " that dataset.json's count, height and width need", 2)
  end subroutine check_size

end module denoise_dataset_meta
