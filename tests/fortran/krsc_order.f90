! denoise_graph_api's to_krsc and from_krsc on the parameter vector 0, 1, ..., NUM_PARAMS - 1:
! prints the KRSC vector, one value a line, then whether from_krsc gives the input back.
program krsc_order
  use, intrinsic :: iso_c_binding
  use cudnn_denoise_checkpoint, only: NUM_PARAMS
  use denoise_graph_api, only: to_krsc, from_krsc
  implicit none
  real(c_float) :: p(NUM_PARAMS), q(NUM_PARAMS)
  integer :: i
  p = [(real(i, c_float), i = 0, NUM_PARAMS - 1)]
  q = to_krsc(p)
  do i = 1, NUM_PARAMS
    print '(I0)', int(q(i))
  end do
  print '(A, L1)', "roundtrip ", all(from_krsc(q) == p)
end program krsc_order
