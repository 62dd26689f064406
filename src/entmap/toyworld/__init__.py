"""The toy world: deterministic 32x32 scenes, their captions and pixel checks, toy subjects and prompt suites."""
