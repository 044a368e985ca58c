"""The demo model `modelcrew demo` uploads: images derived from a public-domain NASA portrait."""
