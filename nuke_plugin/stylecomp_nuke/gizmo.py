"""What the plugin relies on inside StyleCompStylize.gizmo (tests check these against the file)."""

STYLIZE_CLASS = "StyleCompStylize"
BLEND_CLASS = "StyleCompBlend"

WRITE_PLATE = "WriteInputs"
WRITE_STYLE_REFERENCE = "WriteStyleReference"
READ_STYLIZED = "ReadStylized"
LAYER_SHUFFLES = {"depth": "DepthLayer", "normals": "NormalsLayer", "motion": "MotionLayer"}

# Inputs of the gizmo, by number.
PLATE_INPUT = 0
STYLE_REFERENCE_INPUT = 2

# Files below the node's cache folder; the internal Write and Read use the same patterns.
PLATE_PATTERN = "inputs/plate.####.exr"
STYLE_REFERENCE_FILE = "inputs/style_reference.png"
OUTPUT_PATTERN = "stylized/stylized.####.exr"
JOB_FILE = "job.json"

TILE_COLOUR = 0x6B4FA8FF  # the gizmo's own tile_color, restored when an error is cleared
ERROR_COLOUR = 0xC62828FF
