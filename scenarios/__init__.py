"""The built-in scenarios, shipped as package data: `ksmtui list` shows them, `ksmtui NAME` opens one."""
