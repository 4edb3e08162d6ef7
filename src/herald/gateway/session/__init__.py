"""One connection's session: lifecycle, command dispatch, subscribing, deadlines."""
