"""uringsync: cp -a on io_uring."""
