"""Applications built on the segmentation pipeline: ultrasound measurement, selfie background effects."""
