"""What a study reads: prompt suites and subject reference images."""
