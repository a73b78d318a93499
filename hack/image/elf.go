package main

import (
	"bytes"
	"debug/elf"
	"fmt"
)

// elfMachines are the ELF machines of the architectures keeplog's image is built for (GOARCH names).
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// checkELF fails unless data is an ELF executable for arch and, when static, has no program interpreter: an image
// whose binary is for the wrong machine fails only on the node, with "exec format error".
func checkELF(data []byte, arch string, static bool) error {
	want, ok := elfMachines[arch]
	if !ok {
		return fmt.Errorf("no ELF machine known for architecture %q", arch)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("ELF machine %v, want %v (%s)", f.Machine, want, arch)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	if static {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return fmt.Errorf("dynamically linked (has a program interpreter); build with CGO_ENABLED=0")
			}
		}
	}
	return nil
}
