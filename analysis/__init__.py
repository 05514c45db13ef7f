"""analysis: pure functions from result tables to statistics, tables and figures."""
