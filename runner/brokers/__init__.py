"""Books that send a live run's orders to a broker (`broker: alpaca_paper`).

Not wired into the session loop yet: the loop still fills every order by tickrun's
rules (runner.trading). A book here only speaks to the broker; mapping its fills into
the ledger (next to the fill tickrun's rules would have given) is the loop's job.
"""
