"""Gradient-related attribution (survey Sec. III-C-1a and Table IV): the class score's gradient, alone,
times the input, averaged over noise or along a path, or weighted onto feature maps (CAM, Grad-CAM)."""
