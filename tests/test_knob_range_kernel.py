"""A knob value beyond what the kernel's parser reads is refused as the kernel refuses it."""

from __future__ import annotations

import errno

import pytest

from engine.knobs import KSM_KNOBS, KnobError

TOO_LARGE = 2**31  # max_page_sharing is read with kstrtoint


def test_the_model_says_erange_for_max_page_sharing_beyond_int():
    with pytest.raises(KnobError) as info:
        KSM_KNOBS["max_page_sharing"].parse(str(TOO_LARGE))
    assert str(info.value).startswith("ERANGE: ")
    assert KSM_KNOBS["max_page_sharing"].parse(str(TOO_LARGE - 1)) == TOO_LARGE - 1
    with pytest.raises(KnobError, match="^expected an integer >= 2, got 1$"):
        KSM_KNOBS["max_page_sharing"].parse("1")


@pytest.mark.kernel
def test_the_real_kernel_says_erange_too(kernel):
    before = kernel.ksm_read("max_page_sharing")
    with pytest.raises(OSError) as info:
        kernel.ksm_write("max_page_sharing", TOO_LARGE)
    assert info.value.errno == errno.ERANGE
    with pytest.raises(OSError) as info:
        kernel.ksm_write("max_page_sharing", 1)
    assert info.value.errno == errno.EINVAL
    assert kernel.ksm_read("max_page_sharing") == before
