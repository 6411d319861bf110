! SHA-256 (FIPS 180-4) of a byte string, as lower-case hex: the digest a checkpoint's manifest.json
! records for its params.bin (Python's hashlib.sha256(data).hexdigest()). Written by hand.
!
! Words are 32-bit unsigned values held in integer(int64) and masked after every addition:
! Fortran has no unsigned type, and a signed 32-bit addition that overflows is not defined.
module cudnn_denoise_sha256
  use, intrinsic :: iso_fortran_env, only: int8, int64
  implicit none
  private
  public :: sha256_hex

  integer(int64), parameter :: MASK = 4294967295_int64  ! 2**32 - 1
  integer(int64), parameter :: K(64) = [ &
      1116352408_int64, 1899447441_int64, 3049323471_int64, 3921009573_int64, 961987163_int64, &
      1508970993_int64, 2453635748_int64, 2870763221_int64, 3624381080_int64, 310598401_int64, &
      607225278_int64, 1426881987_int64, 1925078388_int64, 2162078206_int64, 2614888103_int64, &
      3248222580_int64, 3835390401_int64, 4022224774_int64, 264347078_int64, 604807628_int64, &
      770255983_int64, 1249150122_int64, 1555081692_int64, 1996064986_int64, 2554220882_int64, &
      2821834349_int64, 2952996808_int64, 3210313671_int64, 3336571891_int64, 3584528711_int64, &
      113926993_int64, 338241895_int64, 666307205_int64, 773529912_int64, 1294757372_int64, &
      1396182291_int64, 1695183700_int64, 1986661051_int64, 2177026350_int64, 2456956037_int64, &
      2730485921_int64, 2820302411_int64, 3259730800_int64, 3345764771_int64, 3516065817_int64, &
      3600352804_int64, 4094571909_int64, 275423344_int64, 430227734_int64, 506948616_int64, &
      659060556_int64, 883997877_int64, 958139571_int64, 1322822218_int64, 1537002063_int64, &
      1747873779_int64, 1955562222_int64, 2024104815_int64, 2227730452_int64, 2361852424_int64, &
      2428436474_int64, 2756734187_int64, 3204031479_int64, 3329325298_int64]
  integer(int64), parameter :: H0(8) = [1779033703_int64, 3144134277_int64, 1013904242_int64, &
      2773480762_int64, 1359893119_int64, 2600822924_int64, 528734635_int64, 1541459225_int64]

contains

  ! The 64 hex digits of the SHA-256 of data(1), data(2), ...
  function sha256_hex(data) result(hex)
    integer(int8), intent(in) :: data(:)
    character(len=64) :: hex
    integer(int64) :: h(8), total, n_blocks, b
    integer(int8), allocatable :: padded(:)
    integer :: i

    total = size(data, kind=int64)
    n_blocks = (total + 8) / 64 + 1                  ! the data, the 0x80 byte, the 8-byte length
    allocate(padded(n_blocks * 64))
    padded = 0
    padded(1:total) = data
    padded(total + 1) = to_byte(128_int64)
    do i = 1, 8                                      ! the length in bits, big-endian
      padded(n_blocks * 64 - i + 1) = to_byte(iand(shiftr(total * 8, 8 * (i - 1)), 255_int64))
    end do
    h = H0
    do b = 0, n_blocks - 1
      call compress(h, padded(b * 64 + 1 : b * 64 + 64))
    end do
    do i = 1, 8
      write(hex(8 * i - 7 : 8 * i), '(Z8.8)') h(i)
    end do
    hex = lower(hex)
  end function sha256_hex

  subroutine compress(h, block)
    integer(int64), intent(inout) :: h(8)
    integer(int8), intent(in) :: block(64)
    integer(int64) :: w(64), v(8), s0, s1, t1, t2
    integer :: i
    do i = 1, 16                                     ! big-endian words
      w(i) = ior(ior(shiftl(byte(block(4 * i - 3)), 24), shiftl(byte(block(4 * i - 2)), 16)), &
          ior(shiftl(byte(block(4 * i - 1)), 8), byte(block(4 * i))))
    end do
    do i = 17, 64
      s0 = ieor(ieor(rotr(w(i - 15), 7), rotr(w(i - 15), 18)), shiftr(w(i - 15), 3))
      s1 = ieor(ieor(rotr(w(i - 2), 17), rotr(w(i - 2), 19)), shiftr(w(i - 2), 10))
      w(i) = iand(w(i - 16) + s0 + w(i - 7) + s1, MASK)
    end do
    v = h
    do i = 1, 64
      s1 = ieor(ieor(rotr(v(5), 6), rotr(v(5), 11)), rotr(v(5), 25))
      t1 = iand(v(8) + s1 + ieor(iand(v(5), v(6)), iand(iand(not(v(5)), MASK), v(7))) + K(i) + w(i), MASK)
      s0 = ieor(ieor(rotr(v(1), 2), rotr(v(1), 13)), rotr(v(1), 22))
      t2 = iand(s0 + ieor(ieor(iand(v(1), v(2)), iand(v(1), v(3))), iand(v(2), v(3))), MASK)
      v(2:8) = v(1:7)
      v(5) = iand(v(5) + t1, MASK)
      v(1) = iand(t1 + t2, MASK)
    end do
    h = iand(h + v, MASK)
  end subroutine compress

  integer(int64) function byte(b)
    integer(int8), intent(in) :: b
    byte = iand(int(b, int64), 255_int64)
  end function byte

  ! The int8 whose bits are those of 0 <= v < 256
  integer(int8) function to_byte(v)
    integer(int64), intent(in) :: v
    to_byte = int(v - merge(256_int64, 0_int64, v > 127), int8)
  end function to_byte

  ! x (32 bits) rotated right by n
  integer(int64) function rotr(x, n)
    integer(int64), intent(in) :: x
    integer, intent(in) :: n
    rotr = ior(shiftr(x, n), iand(shiftl(x, 32 - n), MASK))
  end function rotr

  function lower(text) result(out)
    character(len=*), intent(in) :: text
    character(len=len(text)) :: out
    integer :: i
    out = text
    do i = 1, len(text)
      if (text(i:i) >= "A" .and. text(i:i) <= "F") out(i:i) = achar(iachar(text(i:i)) + 32)
    end do
  end function lower

end module cudnn_denoise_sha256
