"""The built-in sandbox: a simulated organisation behind emulators of the five APIs."""
