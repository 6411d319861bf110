! Print one checksum line per tensor of a dump folder, the lines `python -m cudnn_denoise.dump` prints.
!
! Usage: read_dump DUMP_DIR   (the folder holding manifest.json and <name>.bin, docs/formats.md "Dump")
! Reads manifest.json's tensor lines (one JSON object per line, written by cudnn_denoise.dump: only
! "name", "file" and "shape" are used), checks that each file holds 4 bytes per element of its
! shape, reads it with access='stream' and prints format_checksum(name, values). A file that is
! missing or of the wrong size is reported on stderr and the others are still read; the exit status
! is then 1 (2 for a usage error or an unreadable manifest).
! Build: make -C fortran (see the Makefile), or by hand in fortran/:
!   gfortran -std=f2008 -Wall -O2 cudnn_denoise_checksum.f90 read_dump.f90 -o read_dump
! Compare with Python: python -m cudnn_denoise.dump ... > ours.txt; read_dump OUT | diff ours.txt -
program read_dump
  use, intrinsic :: iso_c_binding, only: c_float
  use, intrinsic :: iso_fortran_env, only: error_unit, int8, int32, int64
  use cudnn_denoise_checksum, only: format_checksum
  implicit none
  character(len=:), allocatable :: folder, line, name, file, shape
  real(c_float), allocatable :: values(:)
  integer(int64) :: count, file_bytes
  integer :: length, unit, iostat, tensors, bad
  character(len=512) :: iomsg
  logical :: is_dump

  if (command_argument_count() /= 1) then
    write(error_unit, '(A)') "usage: read_dump DUMP_DIR"
    stop 2
  end if
  call get_command_argument(1, length=length)
  allocate(character(len=length) :: folder)
  call get_command_argument(1, folder)
  if (transfer(1_int32, 0_int8) /= 1_int8) then
    write(error_unit, '(A)') "read_dump: the dump's files are little-endian float32 and this machine is not"
    stop 2
  end if

  open(newunit=unit, file=folder // "/manifest.json", action="read", status="old", iostat=iostat, &
      iomsg=iomsg)
  if (iostat /= 0) then
    write(error_unit, '(A)') "read_dump: " // trim(iomsg)
    stop 2
  end if
  tensors = 0
  bad = 0
  is_dump = .false.
  do
    call read_line(unit, line, iostat)
    if (iostat /= 0) exit
    if (index(line, '"format": "cudnn_denoise.dump"') > 0) is_dump = .true.
    name = json_text(line, '"name": "', '"')
    if (len(name) == 0) cycle  ! not a tensor line
    file = json_text(line, '"file": "', '"')
    shape = json_text(line, '"shape": [', ']')
    tensors = tensors + 1
    count = element_count(shape)
    inquire(file=folder // "/" // file, size=file_bytes)
    if (file_bytes /= 4 * count) then
      write(error_unit, '(A, I0, A, I0, A)') "read_dump: " // folder // "/" // file // " has ", &
          file_bytes, " bytes; its shape [" // shape // "] needs ", 4 * count, &
          " (a size of -1: missing or unreadable)"
      bad = bad + 1
      cycle
    end if
    allocate(values(count))
    call read_values(folder // "/" // file, values, iostat, iomsg)
    if (iostat /= 0) then
      write(error_unit, '(A)') "read_dump: " // folder // "/" // file // ": " // trim(iomsg)
      bad = bad + 1
    else
      print '(A)', format_checksum(name, values)
    end if
    deallocate(values)
  end do
  close(unit)
  if (.not. is_dump .or. tensors == 0) then
    write(error_unit, '(A)') "read_dump: " // folder // "/manifest.json is not a cudnn_denoise.dump " // &
        "manifest with tensor lines"
    stop 2
  end if
  if (bad > 0) stop 1

contains

  ! The next line of a formatted file, of any length; iostat as from read (negative at the end).
  subroutine read_line(unit, line, iostat)
    integer, intent(in) :: unit
    character(len=:), allocatable, intent(out) :: line
    integer, intent(out) :: iostat
    character(len=256) :: chunk
    integer :: got

    line = ""
    do
      read(unit, '(A)', advance="no", size=got, iostat=iostat) chunk
      line = line // chunk(1:got)
      if (iostat /= 0) exit
    end do
    if (is_iostat_eor(iostat)) iostat = 0
  end subroutine read_line

  ! The text between `opening` and the next `closing` in line; "" if opening does not occur.
  function json_text(line, opening, closing) result(text)
    character(len=*), intent(in) :: line, opening, closing
    character(len=:), allocatable :: text
    integer :: first, last

    text = ""
    first = index(line, opening)
    if (first == 0) return
    first = first + len(opening)
    last = index(line(first:), closing)
    if (last == 0) return
    text = line(first:first + last - 2)
  end function json_text

  ! The product of the comma-separated dimensions; 1 for "" (a scalar, shape []).
  function element_count(dims) result(count)
    character(len=*), intent(in) :: dims
    integer(int64) :: count, dim
    integer :: first, comma

    count = 1
    first = 1
    do while (first <= len(dims))
      comma = index(dims(first:), ",")
      if (comma == 0) comma = len(dims) - first + 2
      read(dims(first:first + comma - 2), *) dim
      count = count * dim
      first = first + comma
    end do
  end function element_count

  subroutine read_values(path, values, iostat, iomsg)
    character(len=*), intent(in) :: path
    real(c_float), intent(out) :: values(:)
    integer, intent(out) :: iostat
    character(len=*), intent(inout) :: iomsg
    integer :: unit

    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", status="old", &
        iostat=iostat, iomsg=iomsg)
    if (iostat /= 0) return
    read(unit, iostat=iostat, iomsg=iomsg) values
    close(unit)
  end subroutine read_values

end program read_dump
