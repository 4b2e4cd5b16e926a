"""The imperative shell: lease, observe, decide, journal, execute."""
