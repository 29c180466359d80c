"""The paper's objects: DGN models, neural paths, kernels (NPK, NTK) and the closed forms of the theory."""
