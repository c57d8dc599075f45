"""A model of Linux KSM (mm/ksm.c) over a simulated multi-process machine. No UI imports here."""
