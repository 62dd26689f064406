"""Analysis of the map: E(s), the paper's tables with bootstrap intervals, hypothesis tests."""
