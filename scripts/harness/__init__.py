"""Real parts that the benchmarks and the tests both start: PostgreSQL, `t2v serve`, free loopback
ports, and the job pod stand-in for kwok nodes. Tests import these; nothing here imports tests."""
