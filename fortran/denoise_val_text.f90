! --val-data's host side, no GPU call: the held-out set's baseline (its noisy inputs' own MSE and
! PSNR against their clean targets, as train's Trainer._baseline_psnr over data/stats.input_mse),
! and the text of the validation lines in train's words and formats (training/loop.py
! versus_baseline, train.py's start line; Python's f"{x:g}", f"{x:.2f}", f"{x:+.2f}" and
! userio/console.plural). tests/fortran compile a driver against this module.
module denoise_val_text
  use, intrinsic :: iso_c_binding, only: c_double, c_float, c_int16_t, c_int64_t
  use, intrinsic :: iso_fortran_env, only: int64
  use, intrinsic :: ieee_arithmetic, only: ieee_is_nan, ieee_is_negative, ieee_value, ieee_positive_inf
  use denoise_check, only: fail, int_text
  use denoise_dataset_meta, only: dataset_meta_t
  use cudnn_denoise_dataset, only: binary16_to_real
  implicit none
  private
  public :: CHUNK_SAMPLES, input_mse, psnr, general, fixed, signed_fixed, plural, versus_baseline, &
      start_line

  integer, parameter :: CHUNK_SAMPLES = 16  ! data/format.iter_chunks's chunk

contains

  ! The mean squared difference of the noisy inputs from their clean targets over every pair, in
  ! double: each chunk of CHUNK_SAMPLES samples summed, the chunks' sums added in order, divided by
  ! count * height * width (input_mse; float16 values widened exactly first).
  real(c_double) function input_mse(data) result(mse)
    type(dataset_meta_t), intent(in) :: data
    real(c_float), allocatable :: noisy(:), clean(:)
    real(c_double) :: total, chunk
    integer(int64) :: plane, first, n, i
    plane = int(data%height, int64) * data%width
    allocate(noisy(plane * CHUNK_SAMPLES), clean(plane * CHUNK_SAMPLES))
    total = 0
    do first = 0, data%count - 1, CHUNK_SAMPLES
      n = min(int(CHUNK_SAMPLES, int64), data%count - first) * plane
      call read_samples(data%noisy, first * plane, data%half, noisy(1:n))
      call read_samples(data%clean, first * plane, data%half, clean(1:n))
      chunk = 0
      do i = 1, n
        chunk = chunk + (real(noisy(i), c_double) - real(clean(i), c_double))**2
      end do
      total = total + chunk
    end do
    mse = total / (real(data%count, c_double) * plane)
  end function input_mse

  ! values(:) from `path` starting at element `first` (float16 widened on the host)
  subroutine read_samples(path, first, half, values)
    character(len=*), intent(in) :: path
    integer(int64), intent(in) :: first
    logical, intent(in) :: half
    real(c_float), intent(out) :: values(:)
    integer(c_int16_t), allocatable :: bits(:)
    integer :: unit, iostat
    open(newunit=unit, file=path, access="stream", form="unformatted", action="read", &
        status="old", iostat=iostat)
    if (iostat == 0 .and. half) then
      allocate(bits(size(values)))
      read(unit, pos=first * 2 + 1, iostat=iostat) bits
      if (iostat == 0) values = binary16_to_real(bits)
    else if (iostat == 0) then
      read(unit, pos=first * 4 + 1, iostat=iostat) values
    end if
    if (iostat /= 0) call fail(path // ": cannot read samples from element " // int_text(first), 2)
    close(unit)
  end subroutine read_samples

  ! 10 log10(peak^2 / MSE), in dB: infinite for an MSE of 0 (training/loop.psnr)
  real(c_double) function psnr(peak, mse)
    real(c_double), intent(in) :: peak, mse
    psnr = ieee_value(psnr, ieee_positive_inf)
    if (mse > 0) psnr = 10 * log10(peak * peak / mse)
  end function psnr

  ! Python's f"{value:g}": 6 significant digits, trailing zeros dropped, an exponent (e+06, e-05)
  ! below 1e-4 or from 1e6 on
  function general(value) result(text)
    real(c_double), intent(in) :: value
    character(len=:), allocatable :: text
    character(len=48) :: buffer
    character(len=16) :: edit
    integer :: e, p
    if (ieee_is_nan(value) .or. .not. abs(value) <= huge(value) .or. value == 0) then
      text = special(value)
      if (value == 0) text = trim(merge("-0", "0 ", ieee_is_negative(value)))
      return
    end if
    write(buffer, '(ES15.5E4)') value  ! d.ddddd, rounded to 6 digits: its exponent decides
    p = index(buffer, "E")
    read(buffer(p + 1:), *) e
    if (e < -4 .or. e >= 6) then
      text = stripped(trim(adjustl(buffer(:p - 1)))) // "e" // merge("-", "+", e < 0)
      if (abs(e) < 10) text = text // "0"
      text = text // int_text(int(abs(e), c_int64_t))
    else
      write(edit, '("(F48.", I0, ")")') 5 - e
      write(buffer, edit) value
      text = stripped(trim(adjustl(buffer)))
    end if
  end function general

  ! a decimal text without its fraction's trailing zeros, nor a bare point
  function stripped(text) result(out)
    character(len=*), intent(in) :: text
    character(len=:), allocatable :: out
    integer :: last
    out = text
    if (index(out, ".") == 0) return
    last = len_trim(out)
    do while (out(last:last) == "0")
      last = last - 1
    end do
    if (out(last:last) == ".") last = last - 1
    out = out(1:last)
  end function stripped

  ! nan, inf, -inf as Python writes them
  function special(value) result(text)
    real(c_double), intent(in) :: value
    character(len=:), allocatable :: text
    text = ""
    if (ieee_is_nan(value)) then
      text = "nan"
    else if (.not. abs(value) <= huge(value)) then
      text = trim(merge("inf ", "-inf", value > 0))
    end if
  end function special

  ! value with `decimals` decimals, as Python's f"{value:.{decimals}f}" (gfortran's F0.d drops the
  ! leading zero of 0.5)
  function fixed(value, decimals) result(text)
    real(c_double), intent(in) :: value
    integer, intent(in) :: decimals
    character(len=:), allocatable :: text
    character(len=400) :: buffer
    character(len=16) :: edit
    text = special(value)
    if (len(text) > 0) return
    write(edit, '("(F400.", I0, ")")') decimals
    write(buffer, edit) value
    text = trim(adjustl(buffer))
  end function fixed

  ! Python's f"{value:+.{decimals}f}": the sign always (+0.00; -0.00 for a negative value)
  function signed_fixed(value, decimals) result(text)
    real(c_double), intent(in) :: value
    integer, intent(in) :: decimals
    character(len=:), allocatable :: text
    text = fixed(value, decimals)
    if (text(1:1) /= "-") text = "+" // text
  end function signed_fixed

  ! `1 pair`, `2 pairs` (console.plural)
  function plural(count, noun) result(text)
    integer(int64), intent(in) :: count
    character(len=*), intent(in) :: noun
    character(len=:), allocatable :: text
    text = int_text(count) // " " // noun
    if (count /= 1) text = text // "s"
  end function plural

  ! `12.34 dB (+1.10 dB: above the noisy input)` (training/loop.versus_baseline)
  function versus_baseline(val_psnr, baseline) result(text)
    real(c_double), intent(in) :: val_psnr, baseline
    character(len=:), allocatable :: text
    real(c_double) :: gain
    gain = val_psnr - baseline
    text = fixed(val_psnr, 2) // " dB (" // signed_fixed(gain, 2) // " dB: " // &
        trim(merge("above    ", "not above", gain > 0)) // " the noisy input)"
  end function versus_baseline

  ! train's line before the first step: the set, the PSNR's range and the baseline
  function start_line(data, baseline) result(text)
    type(dataset_meta_t), intent(in) :: data
    real(c_double), intent(in) :: baseline
    character(len=:), allocatable :: text
    text = "validation: " // plural(int(data%count, int64), "held-out pair") // ", scored at each log " // &
        "line; PSNR = 10 log10(R^2 / MSE), R = " // general(data%high - data%low) // ": the data range [" // &
        general(data%low) // ", " // general(data%high) // "] (" // data%range_from // "); baseline " // &
        "(noisy input) " // fixed(baseline, 2) // " dB"
  end function start_line

end module denoise_val_text
