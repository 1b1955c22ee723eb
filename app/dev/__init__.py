"""The dev loop (`hirehook dev`): the demo tenants (``demo``) and the stand-in ATS APIs
(``demo_ats``) it serves on loopback. No production process imports the stand-ins (an import
contract keeps it so); they ship only so that `make dev` works from an installed package."""
