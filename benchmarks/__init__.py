"""Side-by-side measurements of enstack's speed and memory claims (`python -m benchmarks`)."""
