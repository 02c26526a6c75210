"""DVC stage entry points: each module reads its params, calls the library, writes outputs."""
