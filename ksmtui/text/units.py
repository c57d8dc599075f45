"""Units as every view shows them."""

MIB = 1 << 20
