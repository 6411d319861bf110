! Reading the dataset files of the port (docs/formats.md, "Dataset"): one sample of a noisy.bin or
! clean.bin as real(c_float), from float32 files as they are or from float16 files widened.
!
! A float16 value is an IEEE 754 binary16, little-endian: read as integer(c_int16_t) (Fortran has
! no half-precision type) and converted by binary16_to_real, exactly (every binary16 is a float32).
! On the GPU the same widening is one cudnnTransformTensor, CUDNN_DATA_HALF -> CUDNN_DATA_FLOAT,
! which is what cudnn_denoise's reader does. Written by hand.
module cudnn_denoise_dataset
  use, intrinsic :: iso_c_binding, only: c_float, c_int16_t, c_int32_t
  use, intrinsic :: iso_fortran_env, only: int64
  implicit none
  private
  public :: binary16_to_real, read_sample

contains

  ! The float32 value of the binary16 whose 16 bits `half` holds: sign s, exponent e (bias 15),
  ! fraction f. e = 0: (-1)**s * f * 2**-24 (zero, subnormals); e = 31: infinity or NaN; else the
  ! float32 with the same sign, exponent e - 15 + 127 and the fraction's 10 bits on top of its 23.
  elemental function binary16_to_real(half) result(x)
    integer(c_int16_t), intent(in) :: half
    real(c_float) :: x
    integer(c_int32_t) :: bits, s, e, f

    bits = iand(int(half, c_int32_t), 65535_c_int32_t)
    s = ishft(bits, -15)
    e = iand(ishft(bits, -10), 31_c_int32_t)
    f = iand(bits, 1023_c_int32_t)
    if (e == 0) then
      x = real(f, c_float) * 2.0_c_float**(-24)
      if (s == 1) x = -x
    else if (e == 31) then
      x = transfer(ior(ior(ishft(s, 31), 2139095040_c_int32_t), ishft(f, 13)), x)  ! 0x7F800000
    else
      x = transfer(ior(ior(ishft(s, 31), ishft(e + 112, 23)), ishft(f, 13)), x)
    end if
  end function binary16_to_real

  ! values = sample `index` (counted from 0) of a dataset file of height x width samples, float16
  ! when `half`, else float32; element r * width + c + 1 is pixel (r, c). iostat /= 0 (with
  ! iomsg) when the file cannot be opened or is too short.
  subroutine read_sample(path, index, height, width, half, values, iostat, iomsg)
    character(len=*), intent(in) :: path
    integer, intent(in) :: index, height, width
    logical, intent(in) :: half
    real(c_float), intent(out) :: values(:)
    integer, intent(out) :: iostat
    character(len=*), intent(inout) :: iomsg
    integer(c_int16_t), allocatable :: bits(:)
    integer(int64) :: position
    integer :: unit

    position = int(index, int64) * height * width * merge(2, 4, half) + 1
    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat, iomsg=iomsg)
    if (iostat /= 0) return
    if (half) then
      allocate(bits(height * width))
      read(unit, pos=position, iostat=iostat, iomsg=iomsg) bits
      if (iostat == 0) values = binary16_to_real(bits)
    else
      read(unit, pos=position, iostat=iostat, iomsg=iomsg) values
    end if
    close(unit)
  end subroutine read_sample

end module cudnn_denoise_dataset
