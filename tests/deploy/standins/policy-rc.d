#!/bin/sh
# no service starts inside an image build
exit 101
