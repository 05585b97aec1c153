# The README's default ADE20K config: UperNet + SLaK-T, 160k iterations.
_base_ = ['./upernet/upernet_slak-tiny_8xb2-160k_ade20k-512x512.py']
