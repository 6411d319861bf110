! SIGINT and SIGTERM during training: the handler only records the signal, so the step under way
! finishes, the loop stops, the checkpoint is written and the program exits 128 + signal (130,
! 143), as Python's train does (cudnn_denoise/userio/signals.py, flag()).
!
! The handler is a bind(C) procedure passed to libc's signal(); it sets a volatile module
! variable, which is all a handler may safely do. The loop reads it with signal_received().
module denoise_signals
  use, intrinsic :: iso_c_binding
  implicit none
  private
  public :: SIGINT, SIGTERM, catch_signals, signal_received

  integer(c_int), parameter :: SIGINT = 2, SIGTERM = 15  ! Linux's numbers (signal.h)
  integer(c_int), volatile, save :: received = 0

  interface
    type(c_funptr) function c_signal(signum, handler) bind(C, name="signal")
      import :: c_int, c_funptr
      implicit none
      integer(c_int), value :: signum
      type(c_funptr), value :: handler
    end function c_signal
  end interface

contains

  ! From now on SIGINT and SIGTERM set the flag instead of ending the program.
  subroutine catch_signals()
    type(c_funptr) :: previous
    previous = c_signal(SIGINT, c_funloc(on_signal))
    previous = c_signal(SIGTERM, c_funloc(on_signal))
  end subroutine catch_signals

  ! The last signal caught, or 0.
  integer(c_int) function signal_received()
    signal_received = received
  end function signal_received

  subroutine on_signal(signum) bind(C)
    integer(c_int), value :: signum
    received = signum
  end subroutine on_signal

end module denoise_signals
