"""Research data the agent may read beside prices: news, company filings and corporate
actions, each dated by when the market could first know it (point in time)."""
