"""The paper's experiments as the TRIP authors ran them (issue 19): one preset per
block of Tables 1 and 2. `python -m benchmarks.paper_tables` runs every cell."""
