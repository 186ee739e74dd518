"""The IVR core: flow language, loader, checker, interpreter and simulator (pure)."""
