// Command ordercore is the order, inventory and payment core: see `ordercore --help`.
package main

import "ordercore/cli"

func main() { cli.Run() }
