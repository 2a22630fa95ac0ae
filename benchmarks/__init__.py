"""Side-by-side measurements: ratios against bare trio, measured in the same run."""
