! --cache auto|keep|drop: whether the training reads leave the files in the kernel's page cache,
! chosen as Python's data/cache.py chooses (that module says why): auto keeps them when both files
! fit in KEEP_SHARE of MemAvailable (/proc/meminfo), else drops each range once read. The policy
! is checked where it is parsed.
module denoise_cache
  use, intrinsic :: iso_c_binding, only: c_double
  use, intrinsic :: iso_fortran_env, only: int64
  implicit none
  private
  public :: choose_cache

  real(c_double), parameter :: KEEP_SHARE = 0.5_c_double

contains

  ! keep: the choice; why: the sentence Python's CacheChoice.describe prints
  subroutine choose_cache(policy, nbytes, keep, why)
    character(len=*), intent(in) :: policy
    integer(int64), intent(in) :: nbytes
    logical, intent(out) :: keep
    character(len=:), allocatable, intent(out) :: why
    integer(int64) :: available
    select case (policy)
    case ("keep", "drop")
      keep = policy == "keep"
      why = "--cache " // policy
    case default                                  ! auto
      available = mem_available()
      if (available < 0) then
        keep = .false.
        why = "--cache auto: the memory available is unknown (/proc/meminfo has no MemAvailable), " // &
            "so nothing is kept"
      else
        keep = nbytes <= KEEP_SHARE * available
        why = "--cache auto: both files " // gib(nbytes) // merge(" fit in    ", " exceed    ", keep)
        why = trim(why) // " 50% of the " // gib(available) // " available now"
      end if
    end select
  end subroutine choose_cache

  ! MemAvailable in bytes, or -1
  integer(int64) function mem_available() result(bytes)
    character(len=256) :: line
    integer :: unit, iostat
    bytes = -1
    open(newunit=unit, file="/proc/meminfo", action="read", status="old", iostat=iostat)
    do while (iostat == 0)
      read(unit, '(A)', iostat=iostat) line
      if (iostat /= 0) exit
      if (line(1:13) /= "MemAvailable:") cycle
      read(line(14:), *, iostat=iostat) bytes
      if (iostat == 0) bytes = bytes * 1024      ! the kernel writes kB
      exit
    end do
    if (iostat == 0) close(unit)
  end function mem_available

  function gib(bytes) result(text)
    integer(int64), intent(in) :: bytes
    character(len=:), allocatable :: text
    character(len=32) :: buffer
    write(buffer, '(F32.2)') real(bytes, c_double) / 2.0_c_double**30  ! F0.2 would drop a 0
    text = trim(adjustl(buffer)) // " GiB"
  end function gib

end module denoise_cache
