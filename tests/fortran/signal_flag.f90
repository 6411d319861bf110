! Catches SIGINT and SIGTERM with denoise_signals, says "ready", and waits until one arrives;
! then exits as denoise_train does after its checkpoint: 128 + the signal's number.
program signal_flag
  use, intrinsic :: iso_c_binding, only: c_int64_t
  use, intrinsic :: iso_fortran_env, only: output_unit
  use denoise_check, only: fail, int_text
  use denoise_signals, only: catch_signals, signal_received
  implicit none
  integer :: waited
  call catch_signals()
  print '(A)', "ready"
  flush(output_unit)
  waited = 0
  do while (signal_received() == 0)
    call sleep_a_little()
    waited = waited + 1
    if (waited > 20000) call fail("no signal came", 1)
  end do
  call fail("stopped by signal " // int_text(int(signal_received(), c_int64_t)), 128 + signal_received())
contains
  subroutine sleep_a_little()
    integer :: unit
    open(newunit=unit, file="/dev/null", action="write")  ! a system call: a moment, no busy spin
    close(unit)
  end subroutine sleep_a_little
end program signal_flag
