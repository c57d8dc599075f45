"""ksmtui: a terminal UI over a faithful model of Linux KSM."""
