module tickrun.io/bench/sseload

go 1.26
